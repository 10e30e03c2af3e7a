"""The invariant sweep: a Running run always has a queue item (a call, a timer, a pause's
timeout, a planned step) or a pause. A run with neither can never move again; rather than
let a future bug leave it Running forever in silence, the sweep fails it with the reason and
a log line.

The sweep reads the running-runs index and the queue's item ids without a lock, so it only
finds suspects; `strand.lua` confirms each one atomically before failing it, so a run whose
work is handed from item to item meanwhile is never mistaken for a stranded one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from . import keys
from .state import RunState

log = logging.getLogger("inngest_like.executor")

STRANDED = ("the run was stranded: Running with no queue item and no pause, so nothing could "
            "ever move it again (an executor bug; please report it)")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StrandSweep:
    def __init__(self, redis: Redis, state: RunState, clock: Callable[[], int],
                 run_ended: Callable[[str], Awaitable[None]], grace_ms: int = 10_000) -> None:
        self.redis = redis
        self.state = state
        self.clock = clock
        self.run_ended = run_ended
        self.grace_ms = grace_ms  # runs younger than this are left to settle

    async def _runs_with_items(self, shard: int) -> set[str]:
        """The runs with an item in a shard's queue (a run's items are in its shard's)."""
        owners: set[str] = set()
        cursor: Any = 0
        while True:
            cursor, page = await self.redis.hscan(keys.queue(shard).items, cursor, count=1000)
            owners.update(_text(item_id).split(":", 1)[0] for item_id in page)
            if not cursor:
                return owners

    async def sweep(self) -> list[str]:
        """Fail the stranded runs of every shard; returns their ids."""
        failed = []
        for shard in keys.shards():
            failed += await self._sweep(shard)
        return failed

    async def _sweep(self, shard: int) -> list[str]:
        now = self.clock()
        running: Any = await self.redis.zrangebyscore(keys.runs_running(shard), "-inf",
                                                      now - self.grace_ms)
        if not running:
            return []
        with_items = await self._runs_with_items(shard)
        failed = []
        for raw in running:
            run_id = raw.decode()
            if run_id in with_items:
                continue
            reason = {"name": "StrandedRunError", "message": STRANDED, "error": STRANDED}
            if await self.state.fail_if_stranded(run_id, self.clock(), reason) == 1:
                log.error("run %s: %s", run_id, STRANDED)
                failed.append(run_id)
                await self.run_ended(run_id)
        return failed
