"""The reads every part of the read model shares: a run's view, light run rows for lists,
and the newest-first paging primitives over a sorted-set index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from .. import keys
from .paging import _row, make_cursor, split_cursor
from .search import Result
from .views import EVENT_HEAD_BYTES, ROW_FIELDS, _text, event_head, run_view

MEMBERS_PER_COMMAND = 10_000  # ZMSCORE of a big match set goes in pieces of this size


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

    async def _start_rank(self, index: str, cursor: str | None, until_ms: int | None) -> int:
        """Where a newest-first page starts in `index`: after the cursor's member (its rank,
        O(log N)), and not before `until_ms`. A cursor whose member is gone falls back to its
        score."""
        parsed = split_cursor(cursor)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrank(index, parsed[1] if parsed else "")
            pipe.zcount(index, f"({parsed[0]}" if parsed else "+inf", "+inf")
            pipe.zcount(index, f"({until_ms}" if until_ms is not None else "+inf", "+inf")
            rank, above_cursor, above_until = await pipe.execute()
        start = 0
        if parsed:
            start = int(rank) + 1 if rank is not None else int(above_cursor)
        return max(start, int(above_until) if until_ms is not None else 0)

    async def _slice(self, index: str, start: int, count: int,
                     since_ms: int | None) -> tuple[list[tuple[str, float]], bool]:
        """`count` members newest first from rank `start`, stopping below `since_ms`; and
        whether the index ends (or the time range does) within this slice."""
        got: Any = await self.redis.zrevrange(index, start, start + count - 1, withscores=True)
        out = [(_text(m), float(s)) for m, s in got]
        ended = len(out) < count
        if since_ms is not None and any(s < since_ms for _, s in out):
            out = [(m, s) for m, s in out if s >= since_ms]
            ended = True
        return out, ended

    async def _scores(self, index: str, members: list[str]) -> list[float | None]:
        """Each member's score in `index` (None: not in it), pipelined in pieces."""
        if not members:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for at in range(0, len(members), MEMBERS_PER_COMMAND):
                pipe.zmscore(index, members[at:at + MEMBERS_PER_COMMAND])
            parts = await pipe.execute()
        return [s for part in parts for s in part]

    async def _page(self, index: str, result: Result | None, cursor: str | None, limit: int,
                    since_ms: int | None, until_ms: int | None
                    ) -> tuple[list[tuple[str, float]], str | None, int]:
        """A newest-first page of `index` within [since, until], keeping the members a
        search `result` allows: (members with scores, next cursor, how many match in all).

        Without a search, or with one that excludes a set (`!=`), it walks the index from the
        cursor's rank (O(log N)) skipping the excluded; the count is ZCOUNT minus the
        excluded in range. With a set of matches, it scores them in the index (ZMSCORE),
        sorts those in range newest first and cuts the page after the cursor: exact, and
        it costs the size of the match set, never the size of the store."""
        low = since_ms if since_ms is not None else "-inf"
        high = until_ms if until_ms is not None else "+inf"
        if result is not None and not result.negated:
            ids = sorted(result.ids)
            scored = [(m, float(s)) for m, s in zip(ids, await self._scores(index, ids),
                                                     strict=True)
                      if s is not None and (since_ms is None or s >= since_ms)
                      and (until_ms is None or s <= until_ms)]
            scored.sort(key=lambda x: (x[1], x[0]), reverse=True)
            total = len(scored)
            parsed = split_cursor(cursor)
            if parsed:
                scored = [(m, s) for m, s in scored if (s, m) < (parsed[0], parsed[1])]
            shown = scored[:limit]
            nxt = make_cursor(shown[-1][1], shown[-1][0]) \
                if len(scored) > limit and shown else None
            return shown, nxt, total
        excluded = result.ids if result is not None else frozenset()
        start = await self._start_rank(index, cursor, until_ms)
        found: list[tuple[str, float]] = []
        chunk = limit + 1 if not excluded else max(4 * limit, 200)
        while len(found) <= limit:
            members, ended = await self._slice(index, start, chunk, since_ms)
            for member in members:
                start += 1
                if member[0] not in excluded:
                    found.append(member)
                    if len(found) > limit:
                        break
            if ended or not members:
                break
        shown = found[:limit]
        nxt = make_cursor(shown[-1][1], shown[-1][0]) if len(found) > limit and shown else None
        total = int(await self.redis.zcount(index, low, high))
        if excluded:
            total -= await self._count(index, Result(excluded), since_ms, until_ms)
        return shown, nxt, total

    async def _count(self, index: str, result: Result, since_ms: int | None,
                     until_ms: int | None) -> int:
        """How many of a (positive) result's ids are in `index` within [since, until]."""
        ids = list(result.ids)
        return sum(1 for s in await self._scores(index, ids)
                   if s is not None and (since_ms is None or s >= since_ms)
                   and (until_ms is None or s <= until_ms))
