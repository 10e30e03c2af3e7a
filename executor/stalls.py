"""Stall detection: a Running run that has made no progress for longer than its threshold
(the function's `stallThreshold`, default 5 minutes) is flagged: the run says why and since
when, an `inngest/function.stalled` event is sent once per stall (a function can alert on
it), the dashboard filters stalled runs, and /metrics counts them.

A run sits without progress in one of two places, each watched where it is cheap:

- its call to the app is in flight and does not answer (a provider that accepts a request
  and never responds), and its body sends no heartbeat either: the worker making the call
  flags it, from a timer set per call (`call_watch.py`), so no process polls for it;
- its next item is due and no worker takes it (executors down, or far behind): the sweep
  (scheduler) reads the ready queue's items that became due longer ago than the threshold.

Sleeps, waits, invokes and retry backoffs schedule the run's next item in the future, so
they never count. The flag is cleared as soon as the run moves again (its call answers).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis.asyncio import Redis

from . import keys, shards, times
from .agent_options import DEFAULT_STALL_THRESHOLD_MS
from .clock import Clock
from .ingest import Ingest, internal_event
from .metrics import Metrics
from .queue import QueueItem
from .registry import FunctionConfig, Registry
from .scripts import Scripts

log = logging.getLogger("inngest_like.executor")

STALLED = "inngest/function.stalled"
SWEEP_LIMIT = 500  # overdue items examined per sweep (the oldest first)


def span_text(ms: int) -> str:
    """`1.5s`, `5m`, `2h30m`: a threshold or a duration in a reason."""
    if ms < 60_000:
        return f"{ms / 1000:g}s"
    minutes, seconds = divmod(ms // 1000, 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{seconds}s" if seconds else "")


class Stalls:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry, ingest: Ingest,
                 metrics: Metrics, clock: Clock,
                 default_threshold_ms: int = DEFAULT_STALL_THRESHOLD_MS) -> None:
        self.redis = redis
        self.scripts = scripts
        self.registry = registry
        self.ingest = ingest
        self.metrics = metrics
        self.clock = clock
        self.default_threshold_ms = default_threshold_ms

    def threshold_ms(self, fn: FunctionConfig | None) -> int:
        found = fn.agent.stall_threshold_ms if fn is not None else None
        return found or self.default_threshold_ms

    async def _script(self, run_id: str, action: str, since: int | str = "",
                      reason: str = "") -> list[Any]:
        out: list[Any] = await self.scripts(
            "stall", [keys.run(run_id), keys.runs_stalled(keys.shard_of(run_id))],
            [action, run_id, since, reason])
        return out

    async def flag(self, run_id: str, since_ms: int, reason: str) -> bool:
        """Flag the run stalled since `since_ms` (a run flagged already keeps its first
        `since`), and send its event once per stall. True when this stall is new."""
        out = await self._script(run_id, "flag", since_ms, reason)
        if int(out[0]) != 1:
            return False
        since = int(out[1])
        fields: Any = await self.redis.hmget(keys.run(run_id),
                                             ["function_id", "event", "stalled_reason"])
        fn_id = (fields[0] or b"").decode()
        data = {"function_id": fn_id, "run_id": run_id,
                "event": orjson.loads(fields[1]) if fields[1] else None,
                "since": times.rfc3339(since), "since_ms": since,
                "reason": (fields[2] or b"").decode() or reason}
        # the id derives from the stall, so a second sender (another detector, a retry after
        # a crash before "sent") stores and delivers it once
        event = internal_event(STALLED, data, f"{run_id}-stalled-{since}", self.clock())
        await self.ingest.accept([event])
        sent = await self._script(run_id, "sent", since)
        if int(sent[0]) == 1:
            self.metrics.stalled(fn_id)
            log.warning("run %s of %s is stalled: %s", run_id, fn_id, data["reason"])
            return True
        return False

    async def clear(self, run_id: str, since_ms: int | None = None) -> None:
        """The run moved again: clear its flag (only that stall's, when `since_ms` is set)."""
        await self._script(run_id, "clear", "" if since_ms is None else since_ms)

    async def sweep(self) -> list[str]:
        """Flag the runs whose next item has been due for longer than their threshold, and
        drop runs that ended from the stalled index. Returns the runs flagged."""
        now = self.clock()
        thresholds = [self.threshold_ms(fn) for fn in self.registry.functions.values()]
        floor = min([self.default_threshold_ms, *thresholds])
        # the oldest overdue items of all shards' ready queues, each read in its own queue
        answers = await shards.each_shard(self.redis, lambda pipe, shard: pipe.zrangebyscore(
            keys.queue(shard).ready, "-inf", now - floor, start=0, num=SWEEP_LIMIT,
            withscores=True))
        got = sorted(((due, item_id, shard) for shard, answer in enumerate(answers)
                      for item_id, due in shards.entries(answer)))[:SWEEP_LIMIT]
        flagged = []
        if got:
            async with self.redis.pipeline(transaction=False) as pipe:
                for _, item_id, shard in got:
                    pipe.hget(keys.queue(shard).items, item_id)
                raws = await pipe.execute()
            for (due, _, _), raw in zip(got, raws, strict=True):
                if raw is None:
                    continue
                try:
                    item = QueueItem.from_json(raw)
                except (ValueError, TypeError, KeyError):
                    continue
                threshold = self.threshold_ms(self.registry.functions.get(item.fn_id))
                if now - due < threshold or item.run_id in flagged:
                    continue
                what = "call" if item.kind == "call" else f"{item.kind} timer"
                reason = (f"its next {what} has been due since {times.display(int(due))} UTC "
                          f"(over {span_text(threshold)}) and no worker has taken it: are "
                          "executors running, and keeping up with the queue?")
                if await self.flag(item.run_id, int(due), reason):
                    flagged.append(item.run_id)
        await self._forget_ended()
        return flagged

    async def _forget_ended(self) -> None:
        found = await shards.oldest(self.redis, keys.runs_stalled, 1000)
        if not found:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id, _ in found:
                pipe.hget(keys.run(run_id), "status")
            statuses = await pipe.execute()
        for (run_id, _), status in zip(found, statuses, strict=True):
            if status != b"Running":
                await self.clear(run_id)


def stalled_view(run: dict[bytes, bytes]) -> dict[str, Any] | None:
    """Why and since when a running run is stalled, for the run API (None if it is not)."""
    since = run.get(b"stalled_since")
    if not since or run.get(b"status") != b"Running":
        return None
    return {"since": times.rfc3339(int(since)), "since_ms": int(since),
            "reason": (run.get(b"stalled_reason") or b"").decode()}
