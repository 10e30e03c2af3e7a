"""Retention: ended runs, events and their index entries are deleted once older than the
retention period (`--retention`, 7 days by default), so a store that runs for months keeps
a bounded size instead of growing until Redis refuses writes (or, with an eviction policy,
silently drops queue items). A Running run is never deleted, however old.

Each pass deletes at most `batch` runs and `batch` events, oldest first, in pipelines; the
scheduler repeats passes while they are full. Reads of a deleted run or event answer 404
as for an id that never existed. The dashboard's entries go with them (`_index_entries`):
status indexes, search entries (a word leaves the prefix dictionary with its last run),
an event's resumed / cancelled lists, a run's reruns, and bulk actions past the period.
The per-minute statistics expire on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from . import indexes, keys

log = logging.getLogger("inngest_like.executor")

DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
BATCH = 500


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Retention:
    def __init__(self, redis: Redis, clock: Callable[[], int],
                 retention_ms: int = DEFAULT_RETENTION_MS, batch: int = BATCH) -> None:
        self.redis = redis
        self.clock = clock
        self.retention_ms = retention_ms
        self.batch = batch

    async def sweep(self) -> tuple[int, int]:
        """One pass: (runs deleted, events deleted)."""
        cutoff = self.clock() - self.retention_ms
        runs, events = await self._runs(cutoff), await self._events(cutoff)
        await self._bulk(cutoff)
        return runs, events

    async def _forget_words(self, scope: str, words: set[str]) -> None:
        """Take out of the prefix dictionary the words no run (event) holds any more."""
        if not words:
            return
        ordered = sorted(words)
        async with self.redis.pipeline(transaction=False) as pipe:
            for word in ordered:
                pipe.zcard(keys.search_word(scope, word))
            counts = await pipe.execute()
        gone = [w for w, n in zip(ordered, counts, strict=True) if not n]
        if gone:
            await self.redis.zrem(keys.search_words(scope), *gone)

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
        # the oldest started runs first; a run that ended after the cutoff (or still runs)
        # is kept, and looked at again by a later pass
        found: Any = await self.redis.zrangebyscore(keys.RUNS, "-inf", cutoff, start=0,
                                                    num=self.batch)
        run_ids = [_text(r) for r in found]
        if not run_ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), ["status", "ended_at", "function_id", "event",
                                              "output"])
            rows = await pipe.execute()
        expired: list[tuple[str, str | None, list[Any]]] = []
        for run_id, (status, ended, fn_id, event, output) in zip(run_ids, rows, strict=True):
            if status is None:
                expired.append((run_id, None, []))  # already gone: drop the index entries
            elif status != b"Running" and ended and int(ended) <= cutoff:
                expired.append((run_id, _text(fn_id) if fn_id else None,
                                [_text(status), event, output]))
        if not expired:
            return 0
        words: set[str] = set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id, fn_id, found_run in expired:
                pipe.delete(*keys.run_keys(run_id), keys.run_usage(run_id),
                            keys.run_reruns(run_id))
                pipe.zrem(keys.RUNS, run_id)
                pipe.zrem(keys.RUNS_RUNNING, run_id)
                pipe.zrem(keys.RUNS_STALLED, run_id)
                if fn_id:
                    pipe.zrem(keys.runs_of_function(fn_id), run_id)
                if fn_id and found_run:
                    status, event, output = found_run
                    pipe.zrem(keys.runs_by_status(status), run_id)
                    pipe.zrem(keys.runs_of_function_status(fn_id, status), run_id)
                    pipe.zrem(keys.runs_of_function_status(fn_id, "Running"), run_id)
                    doc = indexes.run_document(orjson.loads(event) if event else {}, status,
                                               orjson.loads(output) if output else None)
                    self._unindex(pipe, doc, indexes.RUNS, run_id)
                    words |= doc.words
            await pipe.execute()
        await self._forget_words(indexes.RUNS, words)
        return len(expired)

    @staticmethod
    def _unindex(pipe: Any, doc: indexes.Document, scope: str, member: str) -> None:
        for key, _, entry in indexes.entries(doc, scope):
            if not entry:  # the prefix dictionary is shared: see _forget_words
                pipe.zrem(key, member)

    async def _events(self, cutoff: int) -> int:
        found: Any = await self.redis.zrangebyscore(keys.EVENTS, "-inf", cutoff, start=0,
                                                    num=self.batch)
        event_ids = [_text(e) for e in found]
        if not event_ids:
            return 0
        # the whole events (the search entries come from their data), 50 at a time: an
        # event may be large
        stored: list[Any] = []
        for at in range(0, len(event_ids), 50):
            stored += await self.redis.mget([keys.event(e) for e in event_ids[at:at + 50]])
        words: set[str] = set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, raw in zip(event_ids, stored, strict=True):
                wire = orjson.loads(raw) if raw else None
                name = wire.get("name") if isinstance(wire, dict) else None
                if isinstance(name, str):
                    pipe.zrem(keys.events_by_name(name), event_id)
                pipe.delete(keys.event(event_id), keys.event_runs(event_id),
                            keys.event_resumed(event_id), keys.event_cancelled(event_id))
                pipe.zrem(keys.EVENTS, event_id)
                pipe.zrem(keys.EVENTS_USER, event_id)
                if isinstance(wire, dict) and not indexes.is_internal(name):
                    doc = indexes.event_document(wire)
                    self._unindex(pipe, doc, indexes.EVENTS, event_id)
                    words |= doc.words
            await pipe.execute()
        await self._forget_words(indexes.EVENTS, words)
        return len(event_ids)
