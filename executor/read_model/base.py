"""The reads every part of the read model shares: a run's view, light run rows for lists,
and the newest-first paging primitives over a sorted-set index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from .. import keys
from .paging import _row, split_cursor
from .views import EVENT_HEAD_BYTES, ROW_FIELDS, _text, event_head, run_view


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
