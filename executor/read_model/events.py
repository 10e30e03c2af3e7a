"""Events: one, the newest, their runs, and pages of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .. import keys, shards
from ..indexes import EVENTS, event_document, is_internal
from ..shards import Index
from .base import Reads
from .paging import LIVE_LOOKBACK_MS, Page
from .search import Search
from .views import EVENT_HEAD_BYTES, _iso, _text, event_head, event_view


def _event_index(name: str | None, internal: bool) -> Index:
    """Events of one name, or the user's (every event with `internal`)."""
    if name:
        return lambda shard: keys.events_by_name(name, shard)
    return keys.events if internal else keys.events_user


def _runs_of(event_id: str) -> Index:
    return lambda shard: keys.event_runs(event_id, shard)


class EventReads(Reads):
    async def event(self, event_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.event(event_id))
        return event_view(raw) if raw else None

    async def event_exists(self, event_id: str) -> bool:
        return bool(await self.redis.exists(keys.event(event_id)))

    async def events(self, name: str | None, limit: int) -> list[dict[str, Any]]:
        found = await shards.newest(self.redis, _event_index(name, internal=True), limit)
        if not found:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, _ in found:  # one GET each: the events are in different shards
                pipe.get(keys.event(event_id))
            raws = await pipe.execute()
        return [event_view(raw) for raw in raws if raw]

    async def _linked(self, lists: list[Index], limit: int | None) -> list[list[str]]:
        """The first `limit` (None: all) run ids of each of an event's run lists (started, resumed,
        cancelled), in one round trip: each list is kept in the shard of the runs it names,
        so one is read from every shard and the shards' parts are put end to end."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for index in lists:
                for shard in keys.shards():
                    pipe.lrange(index(shard), 0, -1 if limit is None else limit - 1)
            parts = await pipe.execute()
        n = keys.shard_count()
        return [[_text(r) for part in parts[at * n:(at + 1) * n] for r in part][:limit]
                for at in range(len(lists))]

    async def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        started, = await self._linked([_runs_of(event_id)], None)
        return await self.runs(started)

    async def event_run_rows(self, event_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """Light rows (see `run_rows`) of the runs an event started."""
        started, = await self._linked([_runs_of(event_id)], limit)
        return await self.run_rows(started)

    async def event_links(self, event_id: str,
                          limit: int = 200) -> dict[str, list[dict[str, Any]]]:
        """Light rows of the runs an event started, resumed (a wait matched it) and
        cancelled (`cancelOn`)."""
        started, resumed, cancelled = await self._linked([
            _runs_of(event_id), lambda shard: keys.event_resumed(event_id, shard),
            lambda shard: keys.event_cancelled(event_id, shard)], limit)
        return {"started": await self.run_rows(started),
                "resumed": await self.run_rows(resumed),
                "cancelled": await self.run_rows(cancelled)}

    async def event_rows(self, members: Sequence[tuple[str, float]],
                         runs_per_event: int = 5) -> list[dict[str, Any]]:
        """Light event rows: name and a data preview from the event's first bytes, its size,
        and the first runs it started with their status. Two round trips, four commands per
        event plus one per run listed."""
        if not members:
            return []
        per = 2 + 2 * keys.shard_count()  # its head and size; its runs in each shard
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, _ in members:
                pipe.getrange(keys.event(event_id), 0, EVENT_HEAD_BYTES - 1)
                pipe.strlen(keys.event(event_id))
                for shard in keys.shards():
                    pipe.lrange(keys.event_runs(event_id, shard), 0, runs_per_event - 1)
                    pipe.llen(keys.event_runs(event_id, shard))
            values = await pipe.execute()
        rows: list[dict[str, Any]] = []
        run_ids: list[str] = []
        for i, (event_id, score) in enumerate(members):
            head, size, *lists = values[per * i: per * (i + 1)]
            if not size:
                continue
            name, preview, complete = event_head(head)
            ids = [_text(r) for runs in lists[0::2] for r in runs][:runs_per_event]
            run_ids.extend(ids)
            rows.append({"id": event_id, "name": name, "received_ms": int(score),
                         "received_at": _iso(int(score)), "preview": preview,
                         "bytes": int(size), "truncated": not complete,
                         "run_ids": ids, "run_count": sum(int(n) for n in lists[1::2]),
                         "runs": []})
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
        result = await search.find(self.redis, EVENTS) if search else None
        members, nxt, total = await self._page(_event_index(name, internal), result, cursor,
                                               limit, since_ms, until_ms)
        rows = await self.event_rows(members)
        return Page(rows, nxt, examined=len(members), total=total)

    async def events_after(self, after_ms: int, seen: set[str], name: str | None = None,
                           limit: int = 100, *, internal: bool = True,
                           search: Search | None = None) -> list[dict[str, Any]]:
        found = await shards.oldest(self.redis, _event_index(name, internal),
                                    limit + len(seen), after_ms - LIVE_LOOKBACK_MS)
        fresh = [(m, s) for m, s in found if m not in seen][:limit]
        if search is not None and fresh:
            async with self.redis.pipeline(transaction=False) as pipe:
                for event_id, _ in fresh:
                    pipe.get(keys.event(event_id))
                raws = await pipe.execute()
            fresh = [m for m, raw in zip(fresh, raws, strict=True)
                     if raw and self._event_matches(raw, search)]
        return await self.event_rows(fresh)

    @staticmethod
    def _event_matches(raw: bytes | str, search: Search) -> bool:
        stored = orjson.loads(raw)
        if is_internal(stored.get("name")):
            return False
        return search.matches(event_document(stored))
