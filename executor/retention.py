"""Retention: ended runs, events and their index entries are deleted once older than the
retention period (`--retention`, 7 days by default), so a store that runs for months keeps
a bounded size instead of growing until Redis refuses writes (or, with an eviction policy,
silently drops queue items). A Running run is never deleted, however old.

Each pass deletes at most `batch` runs and `batch` events, oldest first, in pipelines; the
scheduler repeats passes while they are full. Reads of a deleted run or event answer 404
as for an id that never existed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from . import keys
from .read_model.views import EVENT_HEAD_BYTES, event_head

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
        return await self._runs(cutoff), await self._events(cutoff)

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
                pipe.hmget(keys.run(run_id), ["status", "ended_at", "function_id"])
            rows = await pipe.execute()
        expired: list[tuple[str, str | None]] = []
        for run_id, (status, ended, fn_id) in zip(run_ids, rows, strict=True):
            if status is None:
                expired.append((run_id, None))  # already gone: drop the index entries
            elif status != b"Running" and ended and int(ended) <= cutoff:
                expired.append((run_id, _text(fn_id) if fn_id else None))
        if not expired:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id, fn_id in expired:
                pipe.delete(*keys.run_keys(run_id), keys.run_usage(run_id))
                pipe.zrem(keys.RUNS, run_id)
                pipe.zrem(keys.RUNS_RUNNING, run_id)
                pipe.zrem(keys.RUNS_STALLED, run_id)
                if fn_id:
                    pipe.zrem(keys.runs_of_function(fn_id), run_id)
            await pipe.execute()
        return len(expired)

    async def _events(self, cutoff: int) -> int:
        found: Any = await self.redis.zrangebyscore(keys.EVENTS, "-inf", cutoff, start=0,
                                                    num=self.batch)
        event_ids = [_text(e) for e in found]
        if not event_ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.getrange(keys.event(event_id), 0, EVENT_HEAD_BYTES - 1)
            heads = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, head in zip(event_ids, heads, strict=True):
                name = event_head(head)[0]
                if name is not None:
                    pipe.zrem(keys.events_by_name(name), event_id)
                pipe.delete(keys.event(event_id), keys.event_runs(event_id))
                pipe.zrem(keys.EVENTS, event_id)
            await pipe.execute()
        return len(event_ids)
