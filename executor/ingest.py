"""What an accepted event does: start runs, resume waiting runs, cancel runs.

`accept` writes the events and the runs they start in one script (an acknowledged event
always has its runs), then resumes the pauses waiting for those events and cancels the runs
listening for them. The API, lifecycle events, cron ticks, invokes and reruns all come in
through here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import expressions, flow, ingest_chunks, keys
from .events import IncomingEvent
from .queue import QUEUE_KEYS, QueueItem
from .registry import FunctionConfig, Registry
from .scripts import Scripts
from .state import RunState

log = logging.getLogger("inngest_like.executor")

IDEMPOTENCY_TTL_S = 24 * 3600
INVOKED = "inngest/function.invoked"
FINISHED = "inngest/function.finished"


def internal_event(name: str, data: dict[str, Any], internal_id: str, now_ms: int,
                   event_id: str | None = None) -> IncomingEvent:
    """An event the executor itself emits (lifecycle, invoke, cron): its ids are
    deterministic, so emitting it twice stores it once and starts its runs once."""
    wire = {"name": name, "data": data, "id": event_id or internal_id, "ts": now_ms, "user": {}}
    return IncomingEvent(internal_id, wire, event_id or internal_id)


def _step_record(pause: dict[str, Any], status: str, now: int, **extra: Any) -> dict[str, Any]:
    return {"id": pause["step"], "name": pause.get("name", pause["step"]), "status": status,
            "op": pause.get("op"), "attempts": 1, "started_at": pause.get("created_at"),
            "ended_at": now, **extra}


class Ingest:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry, state: RunState,
                 clock: Callable[[], int]) -> None:
        self.redis = redis
        self.scripts = scripts
        self.registry = registry
        self.state = state
        self.clock = clock
        # set by the service: emits a run's end events (lifecycle.py)
        self.on_run_ended: Callable[[str], Awaitable[None]] | None = None

    # -- starting runs -------------------------------------------------------------------
    def new_run(self, fn: FunctionConfig, events: list[IncomingEvent], now_ms: int,
                idempotency_key: str = "",
                memos: list[tuple[str, bytes, bytes | None]] | None = None) -> dict[str, Any]:
        """The ingest-script record that starts one run of `fn` for `events`."""
        run_id = str(ULID())
        first = events[0]
        fields = {
            "run_id": run_id,
            "function_id": fn.id,
            "app_id": fn.app_id,
            "event_id": first.internal_id,
            "event": orjson.dumps(first.wire).decode(),
            "events": orjson.dumps([e.wire for e in events]).decode(),
            "status": "Running",
            "started_at": str(now_ms),
            "version": "-1",
        }
        wire = first.wire
        control = fn.flow
        item = {"run_id": run_id, "fn_id": fn.id, "step_id": "step", "attempt": 0,
                "max_attempts": fn.max_attempts, "kind": "call", "ref": "",
                "ck": flow.concurrency_slots(fn.id, control, wire)}
        idem_keys: list[list[Any]] = []
        if idempotency_key:  # the sender's event id: one run per id for 24 h
            idem_keys.append([keys.idempotency(fn.id, idempotency_key), IDEMPOTENCY_TTL_S])
        if control.idempotency:
            value = flow.evaluate_key(control.idempotency, wire)
            idem_keys.append([keys.idempotency(fn.id, f"key:{value}"),
                              max(1, control.idempotency_ms // 1000)])
        plan: dict[str, Any] = {}
        if control.rate_limit:
            rate = control.rate_limit
            plan["rate"] = {"key": keys.rate_limit(fn.id, flow.evaluate_key(rate.key, wire)),
                            "limit": rate.limit, "period": rate.period_ms}
        if control.throttle:
            t = control.throttle
            plan["throttle"] = {"key": keys.throttle(fn.id, flow.evaluate_key(t.key, wire)),
                                "limit": t.limit, "period": t.period_ms, "burst": t.burst}
        if control.singleton:
            single = keys.singleton(fn.id, flow.evaluate_key(control.singleton.key, wire))
            plan["singleton"] = {"key": single, "mode": control.singleton.mode,
                                 "run_prefix": keys.RUN_PREFIX}
            fields["singleton_key"] = single
        if control.debounce:
            d = control.debounce
            plan["debounce"] = {"key": keys.debounce(fn.id, flow.evaluate_key(d.key, wire)),
                                "period": d.period_ms, "run_prefix": keys.RUN_PREFIX}
            if d.timeout_ms is not None:  # absent, not null: Lua's cjson.null is truthy
                plan["debounce"]["timeout"] = d.timeout_ms
        if control.batch and expressions.matches(control.batch.condition, {"event": wire}):
            b = control.batch  # an event failing `if` runs alone, at once
            plan["batch"] = {"key": keys.batch(fn.id, flow.evaluate_key(b.key, wire)),
                             "max": b.max_size, "timeout": b.timeout_ms,
                             "run_prefix": keys.RUN_PREFIX}
        listeners = []
        for i, cancel in enumerate(fn.cancel):
            pause = {"id": f"{run_id}:cancel:{i}", "run_id": run_id, "fn_id": fn.id,
                     "kind": "cancel", "expr": cancel.expression, "event": first.wire,
                     "event_id": first.internal_id, "created_at": now_ms,
                     "expires_at": now_ms + cancel.timeout_ms}
            listeners.append({"key": keys.pauses(cancel.event), "id": pause["id"],
                              "json": orjson.dumps(pause).decode()})
        timers = []
        for kind, after in (("timeout-start", fn.timeout_start_ms),
                            ("timeout-finish", fn.timeout_finish_ms)):
            if after is not None:
                timer = QueueItem(id=f"{run_id}:{kind}", run_id=run_id, fn_id=fn.id, kind=kind,
                                  ref=str(after))
                timers.append({"id": timer.id, "json": orjson.dumps(timer.to_dict()).decode(),
                               "due": now_ms + after})
        record: dict[str, Any] = {
            "run_key": keys.run(run_id),
            "runs_key": keys.event_runs(first.internal_id),
            "fn_runs_key": keys.runs_of_function(fn.id),
            "idem_keys": idem_keys,
            "run_id": run_id,
            "fields": fields,
            "item": item,
            # priority: seconds of head start among items due at the same time
            "due": now_ms - 1000 * flow.priority_s(control, wire),
            "flow": plan,
            "memos_key": keys.run_memos(run_id),
            "stack_key": keys.run_stack(run_id),
            "steps_key": keys.run_steps(run_id),
            "memos": [[h, m.decode()] for h, m, _ in memos or []],
            "records": [[h, r.decode()] for h, _, r in memos or [] if r],
            "listeners_key": keys.run_listeners(run_id),
            "listeners": listeners,
            "timers": timers,
        }
        return record

    def _runs_for(self, event: IncomingEvent, now_ms: int) -> list[dict[str, Any]]:
        if event.wire["name"] == INVOKED:
            # step.invoke: start the target by id, whatever its triggers
            target = ((event.wire["data"] or {}).get("_inngest") or {}).get("fn_id")
            fn = self.registry.functions.get(str(target))
            return [self.new_run(fn, [event], now_ms, event.user_id)] if fn else []
        return [self.new_run(fn, [event], now_ms, event.user_id)
                for fn in self.registry.match(event.wire)]

    async def accept(self, events: list[IncomingEvent], *,
                     runs: list[dict[str, Any]] | None = None) -> list[str]:
        """Store events, start the runs they trigger (or exactly `runs`), then resume and
        cancel what waits for them. Returns the ids of runs created."""
        now = self.clock()
        await self.registry.refresh()
        if runs is None:
            runs = [r for e in events for r in self._runs_for(e, now)]
        payload = {
            "now": now,
            "events": [
                {
                    "key": keys.event(e.internal_id),
                    "name_key": keys.events_by_name(e.wire["name"]),
                    "id": e.internal_id,
                    "ts": now,
                    "json": orjson.dumps({**e.wire, "internal_id": e.internal_id}).decode(),
                }
                for e in events
            ],
            "runs": runs,
        }
        out = await ingest_chunks.ingest(lambda body: self.scripts(  # pieces: ingest_chunks.py
            "ingest", [keys.EVENTS, keys.RUNS, QUEUE_KEYS[0], QUEUE_KEYS[1], keys.QUEUE_WAKE],
            [body]), payload)
        ids = [c.decode() if isinstance(c, bytes) else str(c) for c in out]
        split = ids.index("|")
        for replaced in ids[split + 1:]:  # singleton in cancel mode: the new run replaces it
            await self.cancel(replaced, "replaced by a newer run (singleton mode cancel)")
        await self.match_pauses(events)
        return ids[:split]

    # -- pauses and cancel listeners ------------------------------------------------------
    async def match_pauses(self, events: list[IncomingEvent]) -> None:
        names = sorted({e.wire["name"] for e in events})
        correlations = [
            str(e.wire["data"]["correlation_id"]) for e in events
            if e.wire["name"] == FINISHED and isinstance(e.wire.get("data"), dict)
            and e.wire["data"].get("correlation_id")
        ]
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
            invoked = {e.wire["data"]["correlation_id"]: e for e in events
                       if e.wire["name"] == FINISHED and isinstance(e.wire.get("data"), dict)}
            for corr, raw in zip(correlations, results[-1], strict=True):
                if raw:
                    await self._invoke_done(orjson.loads(raw), invoked[corr])

    async def _offer(self, event: IncomingEvent, pause_key: str, pause: dict[str, Any]) -> None:
        now = self.clock()
        if pause.get("expires_at", now + 1) < now:
            return
        variables = {"event": pause.get("event") or {}, "async": event.wire}
        if not expressions.matches(pause.get("expr"), variables):
            return
        if pause["kind"] == "cancel":
            if event.internal_id == pause.get("event_id"):
                return  # a run is never cancelled by its own trigger
            message = f"cancelled by event {event.wire['name']} ({event.internal_id})"
            await self.cancel(pause["run_id"], message)
        elif pause["kind"] == "wait":
            if event.internal_id == pause.get("event_id"):
                return
            await self.state.resume(pause_key, pause, orjson.dumps(event.wire), now,
                                    _step_record(pause, "Completed", now, matched=event.internal_id))

    async def _invoke_done(self, pause: dict[str, Any], finished: IncomingEvent) -> None:
        data = finished.wire["data"]
        if "error" in data and data.get("error") is not None:
            memo = {"error": data["error"]}
            status = "Failed"
        else:
            memo = {"data": data.get("result")}
            status = "Completed"
        now = self.clock()
        await self.state.resume(keys.PAUSES_BY_CORRELATION, pause, orjson.dumps(memo), now,
                                _step_record(pause, status, now))

    async def scan_lookback(self, pause_key: str, pause: dict[str, Any], name: str,
                            since_ms: int) -> bool:
        """Offer a new pause the events of its name stored since `since_ms` (the wait's
        start, or earlier with `lookback`), oldest first. True if one resumed it."""
        ids: Any = await self.redis.zrangebyscore(keys.events_by_name(name), since_ms, "+inf")
        if not ids:
            return False
        raws = await self.redis.mget([keys.event(i.decode()) for i in ids])
        for raw in raws:
            if not raw:
                continue
            stored = orjson.loads(raw)
            internal_id = stored.pop("internal_id", stored.get("id"))
            event = IncomingEvent(internal_id, stored, "")
            now = self.clock()
            variables = {"event": pause.get("event") or {}, "async": stored}
            if internal_id == pause.get("event_id"):
                continue
            if expressions.matches(pause.get("expr"), variables):
                done = await self.state.resume(
                    pause_key, pause, orjson.dumps(event.wire), now,
                    _step_record(pause, "Completed", now, matched=internal_id))
                return done != 0
        return False

    # -- ending runs ----------------------------------------------------------------------
    async def run_ended(self, run_id: str) -> None:
        if self.on_run_ended is not None:
            await self.on_run_ended(run_id)

    async def cancel(self, run_id: str, message: str) -> bool:
        """Cancel a running run (API, cancel event, timeouts); False if it was not running."""
        reason = {"error": message, "name": "FunctionCancelled", "message": message}
        if not await self.state.cancel(run_id, self.clock(), reason):
            return False
        await self.run_ended(run_id)
        return True
