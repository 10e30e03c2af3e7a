"""The runs list: pages of runs newest first, filtered by function, status, time and search,
each answered from an index (`executor/indexes.py`), with the count of matches."""

from __future__ import annotations

from typing import Any

import orjson

from .. import keys, shards
from ..indexes import RUNS, run_document
from ..shards import Index
from .base import Reads
from .paging import LIVE_LOOKBACK_MS, Page, RunQuery
from .phases import add_phases
from .search import Search
from .views import _text


def run_index(query: RunQuery) -> Index:
    """The index a query pages through: by status and function, by one of them, or all
    (each shard has its own: see `shards`)."""
    fn, status = query.function_id, query.status
    if query.stalled:
        return keys.runs_stalled  # scored by when the stall began; accepts() filters more
    if fn and status:
        return lambda shard: keys.runs_of_function_status(fn, status, shard)
    if status == "Running":
        return keys.runs_running
    if status:
        return lambda shard: keys.runs_by_status(status, shard)
    if fn:
        return lambda shard: keys.runs_of_function(fn, shard)
    return keys.runs


class RunList(Reads):
    async def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        found = await shards.newest(self.redis, keys.runs, limit)
        return await self.runs([run_id for run_id, _ in found])

    async def runs_page(self, query: RunQuery, cursor: str | None = None,
                        limit: int = 50, now_ms: int | None = None) -> Page:
        """A page of runs newest first, from `cursor` (the last row of the previous page),
        and how many runs match in all. Costs O(log N) plus the page's rows without a
        search, plus the size of the search's matches with one (see `Reads._page`)."""
        result = await query.search.find(self.redis, RUNS) if query.search else None
        members, nxt, total = await self._page(run_index(query), result, cursor, limit,
                                               query.since_ms, query.until_ms)
        rows = await self.run_rows([m for m, _ in members], [s for _, s in members])
        if now_ms is not None:
            await add_phases(self.redis, rows, now_ms)
        return Page(rows, nxt, examined=len(members), total=total)

    async def run_ids_matching(self, query: RunQuery, cap: int) -> tuple[list[str], int]:
        """Up to `cap` ids of the runs a query matches, newest first, and how many match in
        all (bulk actions on "everything matching this filter")."""
        result = await query.search.find(self.redis, RUNS) if query.search else None
        members, _, total = await self._page(run_index(query), result, None, cap,
                                             query.since_ms, query.until_ms)
        return [m for m, _ in members], total

    async def _search_rows(self, rows: list[dict[str, Any]],
                           search: Search) -> list[dict[str, Any]]:
        """The rows whose run matches `search`, tested on the run itself (the same answer
        as the indexes give)."""
        if not rows:
            return rows
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.hmget(keys.run(row["run_id"]), ["event", "status", "output"])
            values = await pipe.execute()
        out = []
        for row, (event, status, output) in zip(rows, values, strict=True):
            if not event:
                continue
            doc = run_document(orjson.loads(event), _text(status or b"Running"),
                               orjson.loads(output) if output else None)
            if search.matches(doc):
                out.append(row)
        return out

    async def runs_after(self, after_ms: int, seen: set[str], query: RunQuery,
                         limit: int = 100, now_ms: int | None = None) -> list[dict[str, Any]]:
        """Runs started since `after_ms` (minus a small lookback, minus `seen`), oldest first,
        for the live list. Applies function and search filters (not status: a new run is
        Running, and the live list watches it until it ends)."""
        found = await shards.oldest(self.redis, keys.runs, limit + len(seen),
                                    after_ms - LIVE_LOOKBACK_MS)
        fresh = [(m, s) for m, s in found if m not in seen][:limit]
        if query.until_ms is not None:
            fresh = [(m, s) for m, s in fresh if s <= query.until_ms]
        rows = await self.run_rows([m for m, _ in fresh], [s for _, s in fresh])
        if query.function_id:
            rows = [r for r in rows if r["function_id"] == query.function_id]
        if query.search is not None:
            rows = await self._search_rows(rows, query.search)
        if now_ms is not None:
            await add_phases(self.redis, rows, now_ms)
        return rows
