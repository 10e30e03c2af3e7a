"""The reads every part of the read model shares: a run's view, light run rows for lists,
and the newest-first paging primitives over a sorted-set index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from .. import keys, shards
from ..shards import Index
from .paging import _row, make_cursor, split_cursor
from .search import Result
from .views import EVENT_HEAD_BYTES, ROW_FIELDS, event_head, run_view


class Reads:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def run(self, run_id: str) -> dict[str, Any] | None:
        fields = await self.redis.hgetall(keys.run(run_id))
        return run_view(fields) if fields else None

    async def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.run(run_id))
            rows = await pipe.execute()
        return [run_view(fields) for fields in rows if fields]

    async def run_rows(self, run_ids: Sequence[str],
                       scores: Sequence[float | None] | None = None) -> list[dict[str, Any]]:
        """Light rows for lists: two pipelined commands per run (HMGET of its fields, then
        GETRANGE of its event's first bytes for the event name), never the whole event."""
        if not run_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), list(ROW_FIELDS))
            values = await pipe.execute()
        rows = []
        for i, run_id in enumerate(run_ids):
            row = _row(run_id, scores[i] if scores else None, values[i])
            if row is not None:
                rows.append(row)
        await self._name_rows(rows)
        return rows

    async def _name_rows(self, rows: list[dict[str, Any]]) -> None:
        with_event = [r for r in rows if r["event_id"]]
        if not with_event:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in with_event:
                pipe.getrange(keys.event(row["event_id"]), 0, EVENT_HEAD_BYTES - 1)
            heads = await pipe.execute()
        for row, head in zip(with_event, heads, strict=True):
            row["event_name"] = event_head(head)[0]

    async def _page(self, index: Index, result: Result | None, cursor: str | None, limit: int,
                    since_ms: int | None, until_ms: int | None
                    ) -> tuple[list[tuple[str, float]], str | None, int]:
        """A newest-first page of `index` (every shard's, merged) within [since, until],
        keeping the members a search `result` allows: (members with scores, next cursor, how
        many match in all).

        Without a search, or with one that excludes a set (`!=`), it reads each shard's index
        from the cursor's score down (O(log N)) skipping the excluded (`shards.walk_newest`);
        the count is ZCOUNT minus the excluded in range. With a set of matches, it scores
        them in the index (ZMSCORE, each in its own shard's), sorts those in range newest
        first and cuts the page after the cursor: exact, and it costs the size of the match
        set, never the size of the store."""
        parsed = split_cursor(cursor)
        if result is not None and not result.negated:
            ids = sorted(result.ids)
            scored = [(m, float(s)) for m, s in zip(ids, await shards.scores(self.redis, index,
                                                                              ids), strict=True)
                      if s is not None and (since_ms is None or s >= since_ms)
                      and (until_ms is None or s <= until_ms)]
            scored.sort(key=lambda x: (x[1], x[0]), reverse=True)
            total = len(scored)
            if parsed:
                scored = [(m, s) for m, s in scored if (s, m) < (parsed[0], parsed[1])]
            shown = scored[:limit]
            nxt = make_cursor(shown[-1][1], shown[-1][0]) \
                if len(scored) > limit and shown else None
            return shown, nxt, total
        excluded = result.ids if result is not None else frozenset()
        found, total = await shards.walk_newest(
            self.redis, index, limit + 1, parsed, since_ms, until_ms, excluded,
            chunk=limit + 1 if not excluded else max(4 * limit, 200))
        shown = found[:limit]
        nxt = make_cursor(shown[-1][1], shown[-1][0]) if len(found) > limit and shown else None
        if excluded:
            total -= await self._count(index, Result(excluded), since_ms, until_ms)
        return shown, nxt, total

    async def _count(self, index: Index, result: Result, since_ms: int | None,
                     until_ms: int | None) -> int:
        """How many of a (positive) result's ids are in `index` within [since, until]."""
        ids = list(result.ids)
        return sum(1 for s in await shards.scores(self.redis, index, ids)
                   if s is not None and (since_ms is None or s >= since_ms)
                   and (until_ms is None or s <= until_ms))
