"""Events: one, the newest, their runs, and pages of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .. import keys
from ..indexes import EVENTS, event_document, is_internal
from .base import Reads
from .paging import LIVE_LOOKBACK_MS, Page
from .search import Search
from .views import EVENT_HEAD_BYTES, _iso, _text, event_head, event_view


class EventReads(Reads):
    async def event(self, event_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.event(event_id))
        return event_view(raw) if raw else None

    async def event_exists(self, event_id: str) -> bool:
        return bool(await self.redis.exists(keys.event(event_id)))

    async def events(self, name: str | None, limit: int) -> list[dict[str, Any]]:
        index = keys.events_by_name(name) if name else keys.EVENTS
        ids = await self.redis.zrevrange(index, 0, limit - 1)
        if not ids:
            return []
        raws = await self.redis.mget([keys.event(_text(i)) for i in ids])
        return [event_view(raw) for raw in raws if raw]

    async def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        run_ids = await self.redis.lrange(keys.event_runs(event_id), 0, -1)
        return await self.runs([_text(r) for r in run_ids])

    async def event_run_rows(self, event_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """Light rows (see `run_rows`) of the runs an event started."""
        run_ids = await self.redis.lrange(keys.event_runs(event_id), 0, limit - 1)
        return await self.run_rows([_text(r) for r in run_ids])

    async def event_links(self, event_id: str,
                          limit: int = 200) -> dict[str, list[dict[str, Any]]]:
        """Light rows of the runs an event started, resumed (a wait matched it) and
        cancelled (`cancelOn`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(keys.event_runs(event_id), 0, limit - 1)
            pipe.lrange(keys.event_resumed(event_id), 0, limit - 1)
            pipe.lrange(keys.event_cancelled(event_id), 0, limit - 1)
            started, resumed, cancelled = await pipe.execute()
        return {"started": await self.run_rows([_text(r) for r in started]),
                "resumed": await self.run_rows([_text(r) for r in resumed]),
                "cancelled": await self.run_rows([_text(r) for r in cancelled])}

    async def event_rows(self, members: Sequence[tuple[str, float]],
                         runs_per_event: int = 5) -> list[dict[str, Any]]:
        """Light event rows: name and a data preview from the event's first bytes, its size,
        and the first runs it started with their status. Two round trips, four commands per
        event plus one per run listed."""
        if not members:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, _ in members:
                pipe.getrange(keys.event(event_id), 0, EVENT_HEAD_BYTES - 1)
                pipe.strlen(keys.event(event_id))
                pipe.lrange(keys.event_runs(event_id), 0, runs_per_event - 1)
                pipe.llen(keys.event_runs(event_id))
            values = await pipe.execute()
        rows: list[dict[str, Any]] = []
        run_ids: list[str] = []
        for i, (event_id, score) in enumerate(members):
            head, size, runs, count = values[4 * i: 4 * i + 4]
            if not size:
                continue
            name, preview, complete = event_head(head)
            ids = [_text(r) for r in runs]
            run_ids.extend(ids)
            rows.append({"id": event_id, "name": name, "received_ms": int(score),
                         "received_at": _iso(int(score)), "preview": preview,
                         "bytes": int(size), "truncated": not complete,
                         "run_ids": ids, "run_count": int(count), "runs": []})
        if run_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hmget(keys.run(run_id), ["function_id", "status"])
                found = dict(zip(run_ids, await pipe.execute(), strict=True))
            for row in rows:
                row["runs"] = [{"run_id": r, "function_id": _text(found[r][0] or b""),
                                "status": _text(found[r][1] or b"")}
                               for r in row.pop("run_ids") if found[r][1] is not None]
        else:
            for row in rows:
                row.pop("run_ids")
        return rows

    async def events_page(self, name: str | None = None, cursor: str | None = None,
                          limit: int = 50, *, internal: bool = False,
                          search: Search | None = None, since_ms: int | None = None,
                          until_ms: int | None = None) -> Page:
        """A page of events newest first: of one name, or the user's (internal `inngest/*`
        events only with `internal`), within [since, until], matching `search` (over the
        user's events' name and data: internal events are not indexed), and the count."""
        index = keys.events_by_name(name) if name else (
            keys.EVENTS if internal else keys.EVENTS_USER)
        result = await search.find(self.redis, EVENTS) if search else None
        members, nxt, total = await self._page(index, result, cursor, limit, since_ms,
                                               until_ms)
        rows = await self.event_rows(members)
        return Page(rows, nxt, examined=len(members), total=total)

    async def events_after(self, after_ms: int, seen: set[str], name: str | None = None,
                           limit: int = 100, *, internal: bool = True,
                           search: Search | None = None) -> list[dict[str, Any]]:
        index = keys.events_by_name(name) if name else (
            keys.EVENTS if internal else keys.EVENTS_USER)
        got: Any = await self.redis.zrangebyscore(index, after_ms - LIVE_LOOKBACK_MS, "+inf",
                                                  start=0, num=limit + len(seen),
                                                  withscores=True)
        fresh = [(_text(m), float(s)) for m, s in got if _text(m) not in seen][:limit]
        if search is not None and fresh:
            raws = await self.redis.mget([keys.event(m) for m, _ in fresh])
            fresh = [m for m, raw in zip(fresh, raws, strict=True)
                     if raw and self._event_matches(raw, search)]
        return await self.event_rows(fresh)

    @staticmethod
    def _event_matches(raw: bytes | str, search: Search) -> bool:
        stored = orjson.loads(raw)
        if is_internal(stored.get("name")):
            return False
        return search.matches(event_document(stored))
