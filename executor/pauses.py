"""Pauses: runs waiting for an event (`step.wait_for_event`), for an invoked function's end
(`step.invoke`), and cancel listeners (`cancelOn`). An accepted event is offered to the
pauses of its name; the first match resumes (or cancels) the run, exactly once, in
resume.lua / cancel.lua.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from . import expressions, keys
from .events import IncomingEvent
from .state import RunState
from .step_record import StepRecord

FINISHED = "inngest/function.finished"
# a wait's look-back reads at most this many events of its name (oldest first): a bound on
# the work one new wait can cause, whatever the event volume
MAX_LOOKBACK_EVENTS = 1000


class Canceller(Protocol):
    def __call__(self, run_id: str, message: str, unless_started: str = "",
                 event_id: str = "") -> Awaitable[bool]: ...


class Pauses:
    def __init__(self, redis: Redis, state: RunState, clock: Callable[[], int],
                 cancel: Canceller) -> None:
        self.redis = redis
        self.state = state
        self.clock = clock
        self.cancel = cancel

    async def match(self, events: list[IncomingEvent]) -> None:
        """Offer accepted events to the pauses waiting for their names, and end the invoke
        pauses their `inngest/function.finished` events answer."""
        names = sorted({e.wire["name"] for e in events})
        finished = {str(e.wire["data"]["correlation_id"]): e for e in events
                    if e.wire["name"] == FINISHED and isinstance(e.wire.get("data"), dict)
                    and e.wire["data"].get("correlation_id")}
        correlations = list(finished)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.pauses(name))
            if correlations:
                pipe.hmget(keys.PAUSES_BY_CORRELATION, correlations)
            results = await pipe.execute()
        by_name = dict(zip(names, results[: len(names)], strict=True))
        for event in events:
            waiting = by_name.get(event.wire["name"]) or {}
            for raw in waiting.values():
                await self._offer(event, keys.pauses(event.wire["name"]), orjson.loads(raw))
        if correlations:
            for corr, raw in zip(correlations, results[-1], strict=True):
                if raw:
                    await self._invoke_done(orjson.loads(raw), finished[corr])

    async def _offer(self, event: IncomingEvent, pause_key: str, pause: dict[str, Any]) -> None:
        now = self.clock()
        if pause.get("expires_at", now + 1) < now:
            return
        if event.internal_id == pause.get("event_id"):
            return  # a run is never resumed or cancelled by its own trigger
        variables = {"event": pause.get("event") or {}, "async": event.wire}
        if not expressions.matches(pause.get("expr"), variables):
            return
        if pause["kind"] == "cancel":
            message = f"cancelled by event {event.wire['name']} ({event.internal_id})"
            if await self.cancel(pause["run_id"], message, event_id=event.internal_id):
                await self._linked(keys.event_cancelled(event.internal_id), pause["run_id"])
        elif pause["kind"] == "wait":
            if await self.state.resume(pause_key, pause, orjson.dumps(event.wire), now,
                                       StepRecord.of_pause(pause, "Completed", now,
                                                           matched=event.internal_id)) == 1:
                await self._linked(keys.event_resumed(event.internal_id), pause["run_id"])

    async def _linked(self, key: str, run_id: str) -> None:
        """The event page's links to the runs an event resumed or cancelled (written once
        the script that did it answered: a crash in between loses a link, never a run)."""
        await self.redis.rpush(key, run_id)  # type: ignore[misc]

    async def _invoke_done(self, pause: dict[str, Any], finished: IncomingEvent) -> None:
        data = finished.wire["data"]
        if "error" in data and data.get("error") is not None:
            memo: dict[str, Any] = {"error": data["error"]}
            status = "Failed"
        else:
            memo = {"data": data.get("result")}
            status = "Completed"
        now = self.clock()
        await self.state.resume(keys.PAUSES_BY_CORRELATION, pause, orjson.dumps(memo), now,
                                StepRecord.of_pause(pause, status, now))

    async def scan_lookback(self, pause_key: str, pause: dict[str, Any], name: str,
                            since_ms: int) -> bool:
        """Offer a new pause the events of its name stored since `since_ms` (Redis time: the
        wait's start, or earlier with `lookback`), oldest first, at most
        MAX_LOOKBACK_EVENTS of them. True if one resumed it."""
        ids: Any = await self.redis.zrangebyscore(keys.events_by_name(name), since_ms, "+inf",
                                                  start=0, num=MAX_LOOKBACK_EVENTS)
        if not ids:
            return False
        raws = await self.redis.mget([keys.event(i.decode()) for i in ids])
        for raw in raws:
            if not raw:
                continue
            stored = orjson.loads(raw)
            internal_id = stored.pop("internal_id", stored.get("id"))
            if internal_id == pause.get("event_id"):
                continue
            variables = {"event": pause.get("event") or {}, "async": stored}
            if expressions.matches(pause.get("expr"), variables):
                now = self.clock()
                done = await self.state.resume(
                    pause_key, pause, orjson.dumps(stored), now,
                    StepRecord.of_pause(pause, "Completed", now, matched=internal_id))
                if done == 1:
                    await self._linked(keys.event_resumed(str(internal_id)), pause["run_id"])
                return done != 0
        return False
