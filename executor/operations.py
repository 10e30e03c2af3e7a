"""Agent operations, wired once per executor process: cost meters and budgets (`usage.py`),
heartbeats (`heartbeats.py`), stall detection (`stalls.py`), traces (`tracing.py`) and
metrics (`metrics.py`). The engine calls in at a few places: the worker around each call
(`watch`, see `call_watch.py`), the op switch before a retry (`retry_gate`), ingest when runs
start, the lifecycle when a run ends, the scheduler for the stall sweep.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from inngest_like import wire

from . import keys
from .agent_options import DEFAULT_STALL_THRESHOLD_MS
from .call_watch import CallWatch
from .clock import Clock
from .heartbeats import Heartbeats, call_id_of
from .ingest import Ingest
from .metrics import Metrics, NoMetrics
from .queue import QueueItem
from .registry import FunctionConfig, Registry
from .scripts import Scripts
from .stalls import Stalls, stalled_view
from .state import CallState, Checkpointed
from .step_record import step_name
from .tracing import Tracing, step_attributes, trace_field, trace_id_of
from .usage import Usage, budget_error, parse_report, run_usage_view, spend_of

log = logging.getLogger("inngest_like.executor")


class Operations:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry, ingest: Ingest,
                 clock: Clock, *, tracing: Tracing | None = None, metrics: bool = True,
                 stall_threshold_ms: int = DEFAULT_STALL_THRESHOLD_MS) -> None:
        self.redis = redis
        self.registry = registry
        self.clock = clock
        self.tracing = tracing
        self.metrics = Metrics() if metrics else NoMetrics()
        self.usage = Usage(redis, scripts, registry)
        self.heartbeats = Heartbeats(redis, scripts)
        self.stalls = Stalls(redis, scripts, registry, ingest, self.metrics, clock,
                             stall_threshold_ms)

    def watch(self, item: QueueItem, token: str, state: CallState, fn: FunctionConfig,
              now: int) -> CallWatch:
        return CallWatch(self, item, token, state, fn, now)

    async def retry_gate(self, item: QueueItem) -> dict[str, Any] | None:
        """Before a retry is scheduled: the error that fails the run instead (its budget is
        spent), or None (the retry is counted)."""
        stop = await self.usage.retry_gate(item)
        if stop is None:
            self.metrics.retry(item.fn_id)
        return stop

    async def checkpointed(self, run_id: str, body: dict[str, Any],
                           steps: list[dict[str, Any]], traceparent: str | None,
                           now: int, saved: Checkpointed) -> dict[str, Any] | None:
        """Steps an SDK ran inside one call and checkpointed (saved already, protocol §8,
        and noted as a beat of their call by the same script, whose answer is `saved`):
        their usage counts, and each gets a span and a duration. Returns the budget error
        once the run spent its budget: the checkpoint is then refused, so the SDK answers
        the call instead of running its next step in-process, and the worker's check
        before the next call fails the run."""
        item_id = str(body.get("qi_id") or "")
        generation = str(body.get("generation_id") or "")
        call_id = call_id_of(item_id, generation) if item_id and generation else None
        requested = body.get("request_started_at")
        started = (saved.last_beat or (requested if isinstance(requested, int) else None)
                   or now)
        fn_id = saved.fn_id
        for op in steps:
            name = step_name(op)
            report = parse_report(op.get(wire.USAGE_FIELD))
            recorded = None
            if report is not None:
                recorded = await self.usage.record(
                    run_id, fn_id, call_id or f"{run_id}:checkpoint", str(op["id"]), name, 1,
                    report, now)
                if recorded is not None:
                    self.metrics.usage(fn_id, recorded.delta)
            self.metrics.step(fn_id, "Completed", (now - started) / 1000)
            if self.tracing is not None:
                spent = recorded.totals() if recorded else {}
                self.tracing.step_span(run_id, saved.trace, traceparent, f"step {name}",
                                       started, now, {
                    **step_attributes(run_id, fn_id, op, name, 1, spent),
                    "inngest.checkpointed": True})
            started = now
        fn = self.registry.functions.get(fn_id)
        if fn is None or fn.agent.budget is None:
            return None
        names = [b"cost_usd", b"input_tokens", b"output_tokens"]
        values: Any = await self.redis.hmget(keys.run(run_id), names)
        return budget_error(fn.agent.budget,
                            spend_of({k: v for k, v in zip(names, values, strict=True) if v}))

    async def gateway_usage(self, item: QueueItem, token: str, op: dict[str, Any],
                            model: str | None, tokens: dict[str, int]) -> None:
        """The tokens a provider call the executor made itself used (step.ai.infer): metered
        like a step body's report (no cost: the executor knows no prices)."""
        report = {"calls": 1, "models": {model or "unknown": {
            "input_tokens": int(tokens.get("input_tokens") or 0),
            "output_tokens": int(tokens.get("output_tokens") or 0), "cost_usd": 0.0}}}
        try:
            recorded = await self.usage.record(
                item.run_id, item.fn_id, call_id_of(item.id, token), str(op.get("id") or ""),
                step_name(op), item.attempt + 1, report, self.clock())
        except Exception:
            log.exception("run %s: metering an AI gateway call failed", item.run_id)
            return
        if recorded is not None:
            self.metrics.usage(item.fn_id, recorded.delta)

    # -- the run's start and end -----------------------------------------------------------
    def run_fields(self, run_id: str) -> dict[str, str]:
        """Fields a new run's hash starts with: its span context when tracing."""
        return {"trace": trace_field(run_id)} if self.tracing is not None else {}

    def runs_started(self, created: list[str], runs: list[dict[str, Any]]) -> None:
        functions = {r.get("run_id"): (r.get("fields") or {}).get("function_id") for r in runs}
        self.metrics.runs_started([str(functions[r]) for r in created if functions.get(r)])

    def run_ended(self, fields: dict[bytes, bytes]) -> None:
        try:
            self.metrics.run_ended((fields.get(b"function_id") or b"").decode(),
                                   (fields.get(b"status") or b"").decode())
            if self.tracing is not None:
                self.tracing.run_ended(fields)
        except Exception:  # telemetry must never keep a run's end events from going out
            log.exception("recording the end of run %s failed", fields.get(b"run_id"))

    def shutdown(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()


def run_view(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """What the run API and page show of agent operations: the run's usage, whether (why,
    since when) it is stalled, and its trace id (when it started with tracing on)."""
    run_id = (fields.get(b"run_id") or b"").decode()
    stored = fields.get(b"trace")
    return {"usage": run_usage_view(fields), "stalled": stalled_view(fields),
            "trace_id": trace_id_of(run_id, stored) if stored else None}
