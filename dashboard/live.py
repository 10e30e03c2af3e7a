"""Live pages over server-sent events. A feed knows what its page has seen and, once a
second, answers with the messages that bring the page up to date; `stream` turns a feed
into a bounded SSE response (it ends after STREAM_SECONDS, saying so with a `bye` message,
and the page reconnects at once, handing back what it has, so a shutting-down server is
never held open and a planned restart never shows as a lost connection)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse

from executor.read_model import ReadModel, RunQuery, Search
from executor.read_model.phases import add_phases

from .render import SECURITY_HEADERS, rows

STREAM_SECONDS = 10.0
STREAM_TICK = 1.0  # Redis is read once a second per open stream
MAX_WATCH = 200
SEEN_HORIZON_MS = 10_000  # rows older than the newest seen by this much are forgotten


def stream(tick: Callable[[], Awaitable[list[str]]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        deadline = time.monotonic() + STREAM_SECONDS
        while True:  # a disconnected client ends this at the next write
            messages = await tick()
            yield "".join(messages) if messages else ": tick\n\n"
            if time.monotonic() >= deadline:
                yield "event: bye\ndata: {}\n\n"  # planned: the page reconnects quietly
                return
            await asyncio.sleep(STREAM_TICK)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                      **SECURITY_HEADERS})


def _ids(text: str | None) -> dict[str, str]:
    return {r: "Running" for r in (text or "").split(",")[:MAX_WATCH] if r}


class RunsFeed:
    """The runs list, live: new runs matching the filter (a status filter waits for a new
    run to reach that status: `pending`, handed back by the page when it reconnects), and
    status changes of the running rows shown (`watched`)."""

    def __init__(self, read: ReadModel, query: RunQuery, *, after: int, new: bool,
                 watch: str | None = None, pend: str | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.read = read
        self.wanted_status = query.status
        query.status = None  # new runs start Running: watched until they match
        self.query = query
        self.after = after
        self.new = new
        self.watched = _ids(watch)
        self.pending = _ids(pend)
        self.seen: dict[str, int] = {}
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.phases: dict[str, str] = {}  # run id -> the sub-status last sent

    async def tick(self) -> list[str]:
        messages: list[str] = []
        before = set(self.pending)
        if self.new:
            await self._new_rows(messages)
        ids = list(self.watched) + list(self.pending)
        if ids:
            rows = await self.read.run_rows(ids)
            await add_phases(self.read.redis, rows, self.clock())
            for row in rows:
                self._changed(row, messages)
            for run_id in [r for r, s in self.watched.items() if s != "Running"]:
                del self.watched[run_id]
        if set(self.pending) != before:
            messages.append(
                f"event: pending\ndata: {orjson.dumps(list(self.pending)).decode()}\n\n")
        return messages

    async def _new_rows(self, messages: list[str]) -> None:
        for row in await self.read.runs_after(self.after, set(self.seen), self.query,
                                              now_ms=self.clock()):
            self.seen[row["run_id"]] = row["score"]
            self.after = max(self.after, row["score"])
            if self.wanted_status and row["status"] != self.wanted_status:
                if row["status"] == "Running" and len(self.pending) < MAX_WATCH:
                    self.pending[row["run_id"]] = row["status"]
                continue
            messages.append(self._message(row, True))
            if row["status"] == "Running":
                self.watched[row["run_id"]] = row["status"]
                self.phases[row["run_id"]] = _phase(row)
        horizon = self.after - SEEN_HORIZON_MS
        for run_id in [r for r, s in self.seen.items() if s < horizon]:
            del self.seen[run_id]

    def _changed(self, row: dict[str, Any], messages: list[str]) -> None:
        run_id, status = row["run_id"], row["status"]
        if run_id in self.watched and (self.watched[run_id] != status
                                       or self.phases.get(run_id) != _phase(row)):
            messages.append(self._message(row, False))
            self.watched[run_id] = status
            self.phases[run_id] = _phase(row)
        elif run_id in self.pending and status == self.wanted_status:
            messages.append(self._message(row, True))
            self.pending.pop(run_id)
            self.watched[run_id] = status
        elif run_id in self.pending and status != "Running":
            self.pending.pop(run_id)

    def _message(self, row: dict[str, Any], is_new: bool) -> str:
        html = str(rows.module.run_row(row))  # type: ignore[attr-defined]
        data = orjson.dumps({"id": row["run_id"], "score": row["score"],
                             "status": row["status"], "phase": _phase(row), "new": is_new,
                             "html": html})
        return f"event: row\nid: {self.after}\ndata: {data.decode()}\n\n"


def _phase(row: dict[str, Any]) -> str:
    phase = row.get("phase")
    return f"{phase['label']}|{phase.get('at_ms')}" if phase else str(row.get("status"))


class EventsFeed:
    """The events list, live: new events (of one name, if filtered; the user's only unless
    `internal`; matching `search`)."""

    def __init__(self, read: ReadModel, name: str | None, *, after: int, new: bool,
                 internal: bool = True, search: Search | None = None) -> None:
        self.read = read
        self.name = name
        self.after = after
        self.new = new
        self.internal = internal
        self.search = search
        self.seen: dict[str, int] = {}

    async def tick(self) -> list[str]:
        if not self.new:
            return []
        messages: list[str] = []
        for row in await self.read.events_after(self.after, set(self.seen), self.name,
                                                internal=self.internal, search=self.search):
            self.seen[row["id"]] = row["received_ms"]
            self.after = max(self.after, row["received_ms"])
            html = str(rows.module.event_row(row))  # type: ignore[attr-defined]
            data = orjson.dumps({"id": row["id"], "score": row["received_ms"],
                                 "new": True, "html": html}).decode()
            messages.append(f"event: row\nid: {self.after}\ndata: {data}\n\n")
        horizon = self.after - SEEN_HORIZON_MS
        for event_id in [e for e, s in self.seen.items() if s < horizon]:
            del self.seen[event_id]
        return messages


class RunFeed:
    """One run's page, live: tells the page to reload when the run's version changes."""

    def __init__(self, read: ReadModel, run_id: str, last: str) -> None:
        self.read = read
        self.run_id = run_id
        self.last = last

    async def tick(self) -> list[str]:
        version = await self.read.run_version(self.run_id)
        if version is None or version == self.last:
            return []
        self.last = version
        status = version.split(".", 1)[0]
        data = orjson.dumps({"version": version, "status": status}).decode()
        return [f"event: changed\ndata: {data}\n\n"]
