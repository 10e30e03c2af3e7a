"""Retention: what has ended is deleted once older than the retention period (`--retention`,
7 days by default), so a store that runs for months keeps a bounded size instead of growing
until Redis refuses writes (or, with an eviction policy, silently drops queue items). A
Running run is never deleted, however old.

Each pass deletes at most `batch` runs and `batch` events of each shard, oldest first, in
pipelines, one shard at a time (a run's keys and index entries are all in its shard); the
scheduler repeats passes while they are full. Reads of a deleted run or event answer 404
as for an id that never existed. What goes, key family by key family (keys.py):

- an ended run: its hash, memos, stack, steps, pending set, listeners, usage and reruns
  list, and its entries in every run index (all runs, function, status, function x status,
  running, stalled, search terms, numbers and words); a word leaves the prefix dictionary
  with its last run;
- an event, lifecycle events (`inngest/function.*`) included: the event, its runs,
  resumed and cancelled lists, and its entries in the event indexes and search (and
  those lists again with a run that outlived its event, if a rerun recreated them);
- bulk actions started before the period;
- a function a sync removed, after the period: its usage totals (not while a run of it is
  still Running); a cron schedule a sync removed (or changed), after the period: its last
  tick and the claim of that tick;
- an app, once it owns no functions, has not synced for the period, and its removed
  functions are gone (an app that owns functions is never deleted: sync it without them);
- per-day usage fields older than both the period and what the usage view shows;
- concurrency values nothing waits on any more, from the set the backlog reads.

Bounded by their own TTLs instead (Redis's clock): statistics hashes (48 h for minutes, 15
days for hours after their period: `metrics_store`), idempotency keys (24 h, or the
function's `idempotency` period), rate limit, throttle, debounce and batch state, claims
of cron ticks (60 s), heartbeats, sessions and login failures.
Bounded by live work: the queue, pauses, the outbox, concurrency slots, singletons.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from . import indexes, keys, scripts
from .usage import DAYS_SHOWN

log = logging.getLogger("inngest_like.executor")

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
BATCH = 500
DAY_MS = 24 * 3600 * 1000


def period_text(ms: int) -> str:
    """The retention period as `--retention` takes it (7d, 36h, 90m)."""
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _waiting_key(name: str, shard: int) -> str:
    return keys.slot_keys(name, shard)[1]


class Retention:
    def __init__(self, redis: Redis, clock: Callable[[], int],
                 retention_ms: int = DEFAULT_RETENTION_MS, batch: int = BATCH) -> None:
        self.redis = redis
        self.clock = clock
        self.retention_ms = retention_ms
        self.batch = batch
        self._forget_empty = redis.register_script(scripts.source("forget_empty"))
        # shard -> where the walk of its concurrency waiting set stopped (a dict: the shard
        # count is known only once the executor started)
        self._waiting_cursors: dict[int, int] = {}
        self._usage_trimmed_day = -1  # per-day usage fields age by days: trimmed once a day

    async def sweep(self) -> tuple[int, int]:
        """One pass: (runs deleted, events deleted)."""
        now = self.clock()
        cutoff = now - self.retention_ms
        runs, events = await self._runs(cutoff), await self._events(cutoff)
        await self._bulk(cutoff)
        await self._removed(cutoff)
        await self._crons(cutoff)
        await self._waiting()
        await self._usage_days(cutoff, now)
        return runs, events

    async def _forget(self, directory: str, kind: str, key_of: Callable[[str], str],
                      names: list[str]) -> None:
        for at in range(0, len(names), self.batch):
            page = names[at:at + self.batch]
            await self._forget_empty(keys=[directory, *map(key_of, page)], args=[kind, *page])

    async def _forget_words(self, scope: str, words: set[str], shard: int) -> None:
        """Take out of a shard's prefix dictionary the words no run (event) of that shard
        holds any more."""
        await self._forget(keys.search_words(scope, shard), "zset",
                           lambda word: keys.search_word(scope, word, shard), sorted(words))

    async def _waiting(self) -> None:
        """Forget the concurrency waiting zsets that emptied (one value of a per-user
        concurrency key each: without this the set grows with every value ever held back).
        Each shard's set walked a page per pass."""
        for shard in keys.shards():
            directory = keys.concurrency_waiting_keys(shard)
            cursor, found = await self.redis.sscan(directory, self._waiting_cursors.get(shard, 0),
                                                   count=self.batch)
            self._waiting_cursors[shard] = int(cursor)
            await self._forget(directory, "set", functools.partial(_waiting_key, shard=shard),
                               [_text(n) for n in found])

    async def _removed(self, cutoff: int) -> None:
        """Functions removed before the period: their usage totals go (unless a run of
        theirs is still Running: it adds to them); then apps left with no functions, not
        synced for the period. In one transaction over the registry, so a sync meanwhile
        (which may bring a function or app back) makes this pass skip: the next one looks
        again."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.APPS, keys.FUNCTIONS, keys.FUNCTIONS_REMOVED)
                removed: Any = await pipe.hgetall(keys.FUNCTIONS_REMOVED)
                registered = {_text(f) for f in await pipe.hkeys(keys.FUNCTIONS)}
                apps: Any = await pipe.hgetall(keys.APPS)
                infos = {_text(f): orjson.loads(v) for f, v in removed.items()}
                due = [f for f, info in infos.items()
                       if f not in registered and int(info.get("removed_at", 0)) <= cutoff]
                async with self.redis.pipeline(transaction=False) as counts:
                    for fn_id in due:
                        for shard in keys.shards():
                            counts.zcard(keys.runs_of_function_status(fn_id, "Running", shard))
                    running = await counts.execute()
                n = keys.shard_count()
                gone = [f for at, f in enumerate(due) if not any(running[at * n:(at + 1) * n])]
                forgotten = gone + [f for f in infos if f in registered]
                left = {str(info.get("app_id")) for f, info in infos.items()
                        if f not in forgotten}
                stale = []
                for raw_id, raw in apps.items():
                    app_id, app = _text(raw_id), orjson.loads(raw)
                    if not app.get("functions") and app_id not in left \
                            and int(app.get("synced_at") or 0) <= cutoff:
                        stale.append(app_id)
                if not forgotten and not stale:
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                for fn_id in gone:  # shard 0's, with the registry: see below for the rest
                    pipe.delete(keys.function_usage(fn_id, 0))
                if forgotten:
                    pipe.hdel(keys.FUNCTIONS_REMOVED, *forgotten)
                if stale:
                    pipe.hdel(keys.APPS, *stale)
                await pipe.execute()
            except WatchError:
                return
        if gone and keys.shard_count() > 1:
            # a transaction holds the keys of one shard (one slot on a cluster): the other
            # shards' usage totals go once the function is forgotten
            async with self.redis.pipeline(transaction=False) as pipe:
                for fn_id in gone:
                    for shard in keys.shards()[1:]:
                        pipe.delete(keys.function_usage(fn_id, shard))
                await pipe.execute()
        if stale:
            log.info("retention removed %d app(s) with no functions: %s", len(stale),
                     ", ".join(stale))

    async def _crons(self, cutoff: int) -> None:
        """Cron schedules removed before the period: their last tick and its claim. In a
        transaction over the retired set: a sync that puts one back makes this pass skip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(keys.CRONS_RETIRED)
                found: Any = await pipe.zrangebyscore(keys.CRONS_RETIRED, "-inf", cutoff,
                                                      start=0, num=self.batch)
                if not found:
                    return
                schedules = [_text(s) for s in found]
                lasts: Any = await pipe.mget([keys.cron_last(s) for s in schedules])
                pipe.multi()  # type: ignore[no-untyped-call]
                for schedule, last in zip(schedules, lasts, strict=True):
                    claims = [keys.cron_tick(schedule, int(last))] if last else []
                    pipe.delete(keys.cron_last(schedule), *claims)
                pipe.zrem(keys.CRONS_RETIRED, *schedules)
                await pipe.execute()
            except WatchError:
                return

    async def _usage_days(self, cutoff: int, now: int) -> None:
        """Per-day usage fields older than the period and than the days the usage view
        shows (every function's, removed ones' too), once a day."""
        today = now // DAY_MS
        if today == self._usage_trimmed_day:
            return
        self._usage_trimmed_day = today
        keep_from = min(cutoff // DAY_MS, today - DAYS_SHOWN + 1)
        fn_ids = {_text(f) for f in await self.redis.hkeys(keys.FUNCTIONS)}
        fn_ids |= {_text(f) for f in await self.redis.hkeys(keys.FUNCTIONS_REMOVED)}
        totals = [keys.function_usage(fn_id, shard) for fn_id in sorted(fn_ids)
                  for shard in keys.shards()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in totals:
                pipe.hkeys(key)
            fields = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, names in zip(totals, fields, strict=True):
                old = [n for n in map(_text, names)
                       if n.startswith("d:") and int(n.split(":")[1]) < keep_from]
                if old:
                    pipe.hdel(key, *old)
            await pipe.execute()

    async def _bulk(self, cutoff: int) -> None:
        found: Any = await self.redis.zrangebyscore(keys.BULK_JOBS, "-inf", cutoff, start=0,
                                                    num=self.batch)
        if not found:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw in found:
                job_id = _text(raw)
                pipe.delete(keys.bulk_job(job_id), keys.bulk_job_runs(job_id))
            pipe.zrem(keys.BULK_JOBS, *found)
            await pipe.execute()

    async def _runs(self, cutoff: int) -> int:
        """Each shard's expired runs (at most `batch` a shard)."""
        return sum([await self._runs_of(shard, cutoff) for shard in keys.shards()])

    async def _runs_of(self, shard: int, cutoff: int) -> int:
        # the oldest started runs first; a run that ended after the cutoff (or still runs)
        # is kept, and looked at again by a later pass. A run's keys and every index entry
        # of it are in its shard.
        found: Any = await self.redis.zrangebyscore(keys.runs(shard), "-inf", cutoff, start=0,
                                                    num=self.batch)
        run_ids = [_text(r) for r in found]
        if not run_ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), ["status", "ended_at", "function_id", "event",
                                              "output", "event_id"])
            rows = await pipe.execute()
        expired: list[tuple[str, str | None, list[Any]]] = []
        event_ids: set[str] = set()
        for run_id, (status, ended, fn_id, event, output, event_id) in zip(run_ids, rows,
                                                                           strict=True):
            if status is None:
                expired.append((run_id, None, []))  # already gone: drop the index entries
            elif status != b"Running" and ended and int(ended) <= cutoff:
                expired.append((run_id, _text(fn_id) if fn_id else None,
                                [_text(status), event, output]))
                if event_id:
                    event_ids.add(_text(event_id))
        if not expired:
            return 0
        words: set[str] = set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id, fn_id, found_run in expired:
                pipe.delete(*keys.run_keys(run_id), keys.run_usage(run_id),
                            keys.run_reruns(run_id))
                pipe.zrem(keys.runs(shard), run_id)
                pipe.zrem(keys.runs_running(shard), run_id)
                pipe.zrem(keys.runs_stalled(shard), run_id)
                if fn_id:
                    pipe.zrem(keys.runs_of_function(fn_id, shard), run_id)
                if fn_id and found_run:
                    status, event, output = found_run
                    pipe.zrem(keys.runs_by_status(status, shard), run_id)
                    pipe.zrem(keys.runs_of_function_status(fn_id, status, shard), run_id)
                    pipe.zrem(keys.runs_of_function_status(fn_id, "Running", shard), run_id)
                    doc = indexes.run_document(orjson.loads(event) if event else {}, status,
                                               orjson.loads(output) if output else None)
                    self._unindex(pipe, doc, indexes.RUNS, run_id, shard)
                    words |= doc.words
            await pipe.execute()
        await self._forget_words(indexes.RUNS, words, shard)
        await self._orphaned_links(sorted(event_ids))
        return len(expired)

    async def _orphaned_links(self, event_ids: list[str]) -> None:
        """The run lists of events deleted before their runs. A run outlives its event when
        it ended after the event's period; a rerun of it, started later, is appended to the
        (deleted) event's runs list, which recreates the list with no event to delete it
        with: it goes with the runs instead."""
        if not event_ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.exists(keys.event(event_id))
            stored = await pipe.execute()
        gone = [e for e, n in zip(event_ids, stored, strict=True) if not n]
        if gone:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_id in gone:
                    _delete_links(pipe, event_id)
                await pipe.execute()

    @staticmethod
    def _unindex(pipe: Any, doc: indexes.Document, scope: str, member: str,
                 shard: int) -> None:
        for key, _, entry in indexes.entries(doc, scope, shard):
            if not entry:  # the prefix dictionary is shared: see _forget_words
                pipe.zrem(key, member)

    async def _events(self, cutoff: int) -> int:
        """Each shard's expired events (at most `batch` a shard)."""
        return sum([await self._events_of(shard, cutoff) for shard in keys.shards()])

    async def _events_of(self, shard: int, cutoff: int) -> int:
        found: Any = await self.redis.zrangebyscore(keys.events(shard), "-inf", cutoff,
                                                    start=0, num=self.batch)
        event_ids = [_text(e) for e in found]
        if not event_ids:
            return 0
        # the whole events (the search entries come from their data), 50 at a time: an
        # event may be large (one MGET: a shard's events share its hash tag)
        stored: list[Any] = []
        for at in range(0, len(event_ids), 50):
            stored += await self.redis.mget([keys.event(e) for e in event_ids[at:at + 50]])
        words: set[str] = set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, raw in zip(event_ids, stored, strict=True):
                wire = orjson.loads(raw) if raw else None
                name = wire.get("name") if isinstance(wire, dict) else None
                if isinstance(name, str):
                    pipe.zrem(keys.events_by_name(name, shard), event_id)
                pipe.delete(keys.event(event_id))
                _delete_links(pipe, event_id)
                pipe.zrem(keys.events(shard), event_id)
                pipe.zrem(keys.events_user(shard), event_id)
                if isinstance(wire, dict) and not indexes.is_internal(name):
                    doc = indexes.event_document(wire)
                    self._unindex(pipe, doc, indexes.EVENTS, event_id, shard)
                    words |= doc.words
            await pipe.execute()
        await self._forget_words(indexes.EVENTS, words, shard)
        return len(event_ids)


def _delete_links(pipe: Any, event_id: str) -> None:
    """Queue the deletion of an event's lists of the runs it started, resumed and
    cancelled: one list of each in every shard (of the runs there), one DEL a shard."""
    for shard in keys.shards():
        pipe.delete(keys.event_runs(event_id, shard), keys.event_resumed(event_id, shard),
                    keys.event_cancelled(event_id, shard))
