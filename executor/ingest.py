"""Event intake: store accepted events and start the runs they trigger.

`accept` writes the events and the runs they start in one script (an acknowledged event
always has its runs), then hands the events to `pauses.Pauses`, which resumes the runs
waiting for them and cancels the runs listening for them. The API, lifecycle events, cron
ticks, invokes and reruns all come in through here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import expressions, flow, indexes, ingest_chunks, keys
from .events import IncomingEvent
from .pauses import Pauses, cancel_listener
from .queue import FinishTimeout, QueueItem, StartTimeout
from .registry import FunctionConfig, Registry
from .scripts import Scripts
from .state import RunState

log = logging.getLogger("inngest_like.executor")

IDEMPOTENCY_TTL_S = 24 * 3600
INGEST_KEYS = [keys.EVENTS, keys.RUNS, keys.QUEUE_ITEMS, keys.QUEUE_READY, keys.QUEUE_WAKE,
               keys.RUNS_RUNNING]
INVOKED = "inngest/function.invoked"


def internal_event(name: str, data: dict[str, Any], internal_id: str, now_ms: int,
                   event_id: str | None = None) -> IncomingEvent:
    """An event the executor itself emits (lifecycle, invoke, cron): its ids are
    deterministic, so emitting it twice stores it once and starts its runs once."""
    wire = {"name": name, "data": data, "id": event_id or internal_id, "ts": now_ms, "user": {}}
    return IncomingEvent(internal_id, wire, event_id or internal_id)


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
        # set by the service (operations.py): a new run's extra fields (its span context),
        # and what to note of the runs an accept created (metrics)
        self.run_fields: Callable[[str], dict[str, str]] = lambda run_id: {}
        self.on_runs_started: Callable[[list[str], list[dict[str, Any]]], None] = (
            lambda created, runs: None)
        self.pauses = Pauses(redis, state, clock, self.cancel)

    # -- starting runs -------------------------------------------------------------------
    def new_run(self, fn: FunctionConfig, events: list[IncomingEvent], now_ms: int,
                idempotency_key: str = "",
                memos: list[tuple[str, bytes, bytes | None]] | None = None,
                rerun: bool = False) -> dict[str, Any]:
        """The ingest-script record that starts one run of `fn` for `events`. A rerun is
        started whatever idempotency, debounce and batching would decide (as Inngest's
        reruns are): the user asked for this run explicitly."""
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
            **self.run_fields(run_id),
        }
        wire = first.wire
        control = fn.flow
        item = {"run_id": run_id, "fn_id": fn.id, "step_id": "step", "attempt": 0,
                "max_attempts": fn.max_attempts, "kind": "call", "payload": {}, "ck": []}
        record: dict[str, Any] = {}
        try:
            plan, idem_keys = self._flow_plan(fn, wire, idempotency_key, fields)
            item["ck"] = flow.concurrency_slots(fn.id, control, wire)
            if rerun:
                idem_keys = []
                plan.pop("debounce", None)
                plan.pop("batch", None)
        except flow.KeyExpressionError as exc:
            # the rule: a run whose key cannot be computed does not start (it would share a
            # "None" key with unrelated events); it is recorded Skipped with the reason
            plan, idem_keys = {}, []
            record["skip"] = f"skipped: {exc}"
        listeners = [cancel_listener(run_id, fn.id, i, cancel, first, now_ms)
                     for i, cancel in enumerate(fn.cancel)]
        timers = []
        deadlines: list[tuple[str, StartTimeout | FinishTimeout]] = []
        if fn.timeout_start_ms is not None:
            deadlines.append(("timeout-start", StartTimeout(fn.timeout_start_ms)))
        if fn.timeout_finish_ms is not None:
            deadlines.append(("timeout-finish", FinishTimeout(fn.timeout_finish_ms)))
        for kind, deadline in deadlines:
            timer = QueueItem.of(deadline, id=f"{run_id}:{kind}", run_id=run_id, fn_id=fn.id)
            timers.append({"id": timer.id, "json": orjson.dumps(timer.to_dict()).decode(),
                           "due": now_ms + deadline.after_ms})
        record.update({
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
            "ix": indexes.start_plan(fn.id, now_ms, first.wire),
        })
        return record

    @staticmethod
    def _flow_plan(fn: FunctionConfig, wire: dict[str, Any], idempotency_key: str,
                   fields: dict[str, Any]) -> tuple[dict[str, Any], list[list[Any]]]:
        """What ingest.lua decides for this run's start: idempotency keys and the flow
        options' keys. Raises flow.KeyExpressionError when a key expression fails."""
        control = fn.flow
        idem_keys: list[list[Any]] = []
        if idempotency_key:  # the sender's event id: one run per id for 24 h
            idem_keys.append([keys.idempotency(fn.id, idempotency_key), IDEMPOTENCY_TTL_S,
                              f"duplicate event id {idempotency_key}"])
        if control.idempotency:
            value = flow.evaluate_key(control.idempotency, wire, "idempotency key")
            idem_keys.append([keys.idempotency(fn.id, f"key:{value}"),
                              max(1, control.idempotency_ms // 1000),
                              f"idempotency key {value!r} already used"])
        plan: dict[str, Any] = {}
        if control.rate_limit:
            rate = control.rate_limit
            value = flow.evaluate_key(rate.key, wire, "rateLimit.key")
            plan["rate"] = {"key": keys.rate_limit(fn.id, value), "limit": rate.limit,
                            "period": rate.period_ms}
        if control.throttle:
            t = control.throttle
            value = flow.evaluate_key(t.key, wire, "throttle.key")
            plan["throttle"] = {"key": keys.throttle(fn.id, value), "limit": t.limit,
                                "period": t.period_ms, "burst": t.burst}
        if control.singleton:
            value = flow.evaluate_key(control.singleton.key, wire, "singleton.key")
            single = keys.singleton(fn.id, value)
            plan["singleton"] = {"key": single, "mode": control.singleton.mode,
                                 "run_prefix": keys.RUN_PREFIX}
            fields["singleton_key"] = single
        if control.debounce:
            d = control.debounce
            value = flow.evaluate_key(d.key, wire, "debounce.key")
            plan["debounce"] = {"key": keys.debounce(fn.id, value), "period": d.period_ms,
                                "run_prefix": keys.RUN_PREFIX}
            if d.timeout_ms is not None:  # absent, not null: Lua's cjson.null is truthy
                plan["debounce"]["timeout"] = d.timeout_ms
        if control.batch and expressions.matches(control.batch.condition, {"event": wire}):
            b = control.batch  # an event failing `if` runs alone, at once
            value = flow.evaluate_key(b.key, wire, "batchEvents.key")
            plan["batch"] = {"key": keys.batch(fn.id, value), "max": b.max_size,
                             "timeout": b.timeout_ms, "run_prefix": keys.RUN_PREFIX}
        return plan, idem_keys

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
                    **indexes.event_plan(e.wire),
                }
                for e in events
            ],
            "runs": runs,
        }
        out = await ingest_chunks.ingest(lambda body: self.scripts(  # pieces: ingest_chunks.py
            "ingest", INGEST_KEYS, [body]), payload)
        ids = [c.decode() if isinstance(c, bytes) else str(c) for c in out]
        split = ids.index("|")
        self.on_runs_started(ids[:split], runs)
        for replaced in ids[split + 1:]:  # singleton in cancel mode: the new run replaces it
            await self.cancel(replaced, "replaced by a newer run (singleton mode cancel)")
        await self.pauses.match(events)
        return ids[:split]

    # -- ending runs ----------------------------------------------------------------------
    async def run_ended(self, run_id: str) -> None:
        if self.on_run_ended is not None:
            await self.on_run_ended(run_id)

    async def cancel(self, run_id: str, message: str, unless_started: str = "",
                     event_id: str = "") -> bool:
        """Cancel a running run (API, cancel event, timeouts); False if it was not running
        (or, with `unless_started`, that item of it was leased or is gone). `event_id`: the
        event that cancelled it (kept in the reason, so the run page links to it)."""
        reason: dict[str, Any] = {"error": message, "name": "FunctionCancelled",
                                  "message": message}
        if event_id:
            reason["event_id"] = event_id
        if await self.state.cancel(run_id, self.clock(), reason, unless_started) != 1:
            return False
        await self.run_ended(run_id)
        return True
