"""Time-driven work every executor process shares: cron ticks, the lifecycle outbox, and the
invariant sweep (no Running run without a queue item or a pause: `invariants.py`).

Each tick of each cron trigger fires once across all processes (SET NX on the tick), and
a restart shorter than the period skips nothing: the last fired tick is stored, and on the
next pass the latest missed tick fires.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis

from . import cron, keys, times
from .cron import Schedule
from .ingest import Ingest, internal_event
from .invariants import StrandSweep
from .lifecycle import Lifecycle
from .registry import FunctionConfig, Registry
from .retention import Retention
from .stalls import Stalls

log = logging.getLogger("inngest_like.executor")

SCHEDULED = "inngest/scheduled.timer"
CLAIM_TTL_S = 60  # a claimer that died before firing frees its tick after this
SWEEP_EVERY_MS = 5_000
STRAND_SWEEP_EVERY_MS = 30_000
RETENTION_EVERY_MS = 60_000
STALL_SWEEP_EVERY_MS = 5_000


class Scheduler:
    def __init__(self, redis: Redis, registry: Registry, ingest: Ingest, lifecycle: Lifecycle,
                 clock: Callable[[], int], strand_sweep_every_ms: int = STRAND_SWEEP_EVERY_MS,
                 retention: Retention | None = None, stalls: Stalls | None = None) -> None:
        self.redis = redis
        self.registry = registry
        self.ingest = ingest
        self.lifecycle = lifecycle
        self.clock = clock
        self.strands = StrandSweep(redis, ingest.state, clock, lifecycle.run_ended)
        self.strand_sweep_every_ms = strand_sweep_every_ms
        self._last_sweep = 0
        self._last_strand_sweep = clock()
        self.retention = retention or Retention(redis, clock)
        self._last_retention = 0
        self.stalls = stalls  # runs whose next item is overdue are flagged stalled
        self._last_stall_sweep = 0

    async def run_forever(self) -> None:
        while True:
            wait_ms = 1000
            try:
                wait_ms = await self.tick()
            except Exception:
                log.exception("scheduler pass failed")
            await asyncio.sleep(max(0.01, min(wait_ms, 1000) / 1000))

    async def tick(self) -> int:
        """One pass: fire due cron ticks, sweep the outbox. Returns ms until the next tick."""
        await self.registry.refresh()
        now = self.clock()
        next_due = now + 1000
        for fn in list(self.registry.functions.values()):
            for source in fn.crons:
                due = await self._cron(fn, source, now)
                next_due = min(next_due, due)
        if now - self._last_sweep >= SWEEP_EVERY_MS:
            self._last_sweep = now
            await self.lifecycle.sweep()
        if now - self._last_strand_sweep >= self.strand_sweep_every_ms:
            self._last_strand_sweep = now
            await self.strands.sweep()
        if now - self._last_retention >= RETENTION_EVERY_MS:
            self._last_retention = now
            while max(await self.retention.sweep()) >= self.retention.batch:
                pass  # a full pass: more may be due (each pass is bounded)
        if self.stalls is not None and now - self._last_stall_sweep >= STALL_SWEEP_EVERY_MS:
            self._last_stall_sweep = now
            await self.stalls.sweep()
        return next_due - now

    async def _cron(self, fn: FunctionConfig, source: str, now: int) -> int:
        schedule = Schedule.parse(source)
        schedule_id = cron.schedule_id(fn.id, source)
        last_key = keys.cron_last(schedule_id)
        raw = await self.redis.get(last_key)
        if raw is None:
            # first sight of this schedule: count from now
            await self.redis.set(last_key, now, nx=True)
            return schedule.next_after(now)
        last = int(raw)
        due = schedule.next_after(last)
        if due > now:
            return due
        latest = due
        while (following := schedule.next_after(latest)) <= now:
            latest = following
        claim = keys.cron_tick(schedule_id, latest)
        if not await self.redis.set(claim, now, nx=True, ex=CLAIM_TTL_S):
            return schedule.next_after(latest)  # another process fires it
        try:
            await self._fire(fn, source, latest, now)
        except Exception:
            await self.redis.delete(claim)  # let the next pass (any process) fire it
            raise
        await self.redis.set(last_key, latest)
        return schedule.next_after(latest)

    async def _fire(self, fn: FunctionConfig, source: str, tick: int, now: int) -> None:
        stamp = times.rfc3339_seconds(tick)
        event = internal_event(
            SCHEDULED, {"cron": source, "scheduledAt": stamp, "fireAt": times.rfc3339_seconds(now)},
            # the letter after "cron" names a shard of its own per function (keys.shard_of
            # reads the id up to its first '-'), so the store's ticks spread over shards
            f"cron{keys.shard_digit(keys.shard_by_hash(fn.id))}-{fn.id}-{tick}", now, stamp)
        run = self.ingest.new_run(fn, [event], now)
        await self.ingest.accept([event], runs=[run])
        log.info("cron %s fired %s for %s", source, stamp, fn.id)
