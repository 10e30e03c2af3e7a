"""The runs list: pages of runs newest first, filtered by function, status, time and search."""

from __future__ import annotations

from typing import Any

import orjson

from .. import keys
from .base import Reads
from .paging import LIVE_LOOKBACK_MS, SCAN_BATCH, SCAN_BUDGET, Page, RunQuery, _row, make_cursor
from .search import Search
from .views import ROW_FIELDS, _text


class RunList(Reads):
    async def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        run_ids = await self.redis.zrevrange(keys.RUNS, 0, limit - 1)
        return await self.runs([_text(r) for r in run_ids])

    async def runs_page(self, query: RunQuery, cursor: str | None = None,
                        limit: int = 50) -> Page:
        """A page of runs newest first, from `cursor` (the last row of the previous page)."""
        # a function's own index makes filtering by function as cheap as no filter
        index = keys.runs_of_function(query.function_id) if query.function_id else keys.RUNS
        if query.stalled:
            index = keys.RUNS_STALLED  # scored by when the stall began
        start = await self._start_rank(index, cursor, query.until_ms)
        if not query.filtered:
            members, _ = await self._slice(index, start, limit + 1, query.since_ms)
            shown = members[:limit]
            rows = await self.run_rows([m for m, _ in shown], [s for _, s in shown])
            more = len(members) > limit
            nxt = make_cursor(shown[-1][1], shown[-1][0]) if more and shown else None
            return Page(rows, nxt, examined=len(shown))
        return await self._scan(query, index, start, limit)

    async def _scan(self, query: RunQuery, index: str, start: int, limit: int) -> Page:
        found: list[dict[str, Any]] = []
        examined = 0
        last: tuple[str, float] | None = None
        ended = False
        while len(found) <= limit and examined < SCAN_BUDGET and not ended:
            count = min(SCAN_BATCH, SCAN_BUDGET - examined)
            members, ended = await self._slice(index, start + examined, count, query.since_ms)
            if not members:
                ended = True
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, _ in members:
                    pipe.hmget(keys.run(member), list(ROW_FIELDS))
                values = await pipe.execute()
            batch = []
            for (member, score), vals in zip(members, values, strict=True):
                row = _row(member, score, vals)
                if row is not None and query.accepts(row):
                    batch.append(row)
            if query.search is not None:
                batch = await self._search_rows(batch, query.search)
            # the rows of this batch in index order; stop exactly after the row that fills
            # the page (+1 to know there is more), so the cursor is exact
            positions = {m: i for i, (m, _) in enumerate(members)}
            for row in batch:
                found.append(row)
                if len(found) > limit:
                    stop = positions[row["run_id"]]
                    examined += stop + 1
                    last = members[stop]
                    break
            else:
                examined += len(members)
                last = members[-1]
        shown = found[:limit]
        await self._name_rows(shown)
        if len(found) > limit:
            nxt = make_cursor(shown[-1]["score"], shown[-1]["run_id"])
            return Page(shown, nxt, examined, oldest_examined_ms=int(last[1]) if last else None)
        if not ended and examined >= SCAN_BUDGET:
            ended = not (await self._slice(index, start + examined, 1, query.since_ms))[0]
        partial = not ended and examined >= SCAN_BUDGET and last is not None
        resume = make_cursor(last[1], last[0]) if partial and last else None
        return Page(shown, resume, examined, partial=partial,
                    oldest_examined_ms=int(last[1]) if last else None)

    async def _search_rows(self, rows: list[dict[str, Any]],
                           search: Search) -> list[dict[str, Any]]:
        if not rows:
            return rows
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.hget(keys.run(row["run_id"]), "event")
            raws = await pipe.execute()
        out = []
        for row, raw in zip(rows, raws, strict=True):
            if raw and search.matches(orjson.loads(raw), raw):
                out.append(row)
        return out

    async def runs_after(self, after_ms: int, seen: set[str], query: RunQuery,
                         limit: int = 100) -> list[dict[str, Any]]:
        """Runs started since `after_ms` (minus a small lookback, minus `seen`), oldest first,
        for the live list. Applies function and search filters (not status: a new run is
        Running, and the live list watches it until it ends)."""
        got: Any = await self.redis.zrangebyscore(keys.RUNS, after_ms - LIVE_LOOKBACK_MS, "+inf",
                                             start=0, num=limit + len(seen), withscores=True)
        fresh = [(_text(m), float(s)) for m, s in got if _text(m) not in seen][:limit]
        if query.until_ms is not None:
            fresh = [(m, s) for m, s in fresh if s <= query.until_ms]
        rows = await self.run_rows([m for m, _ in fresh], [s for _, s in fresh])
        if query.function_id:
            rows = [r for r in rows if r["function_id"] == query.function_id]
        if query.search is not None:
            rows = await self._search_rows(rows, query.search)
        return rows
