"""The watch over one call to the app (one step attempt): what the executor adds around it
for agent operations.

- the call id and, with tracing on, `traceparent` (headers the official SDKs ignore);
- the budget: no call starts once the run spent it (`stop`);
- the step timeout (the step's own, else the function's `stepTimeout`) and the heartbeat
  timeout: the call is ended (its request cancelled) and counts as a failed attempt with a
  clear error, retried with backoff like any other;
- the stall timer: a call without an answer for longer than the stall threshold flags the
  run stalled; the flag is cleared when the call answers;
- the usage the answer reports (recorded, metered), the span, the duration histogram.

Without limits a call costs a timer and a dict; no Redis read is added unless a step
declared a heartbeat timeout, a run was flagged, or the answer reports usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from inngest_like.wire import Opcode

from .agent_options import StepLimits
from .driver import CallError, Completed, Ops, Outcome
from .heartbeats import CALL_HEADER, call_id_of
from .queue import QueueItem
from .registry import FunctionConfig
from .stalls import span_text
from .state import CallState
from .step_record import step_name, step_times
from .tracing import step_attributes, usage_attributes
from .usage import Recorded, report_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from .operations import Operations

log = logging.getLogger("inngest_like.executor")

STATUS_OF_OP = {Opcode.STEP_RUN: "Completed", Opcode.STEP: "Completed",
                Opcode.STEP_FAILED: "Failed", Opcode.SLEEP: "Sleeping",
                Opcode.WAIT_FOR_EVENT: "Waiting", Opcode.INVOKE_FUNCTION: "Invoking",
                Opcode.RUN_COMPLETE: "Completed", Opcode.STEP_PLANNED: "Planned"}
RUN_OPS = (Opcode.STEP_RUN, Opcode.STEP)
VERB_OF_OP = {Opcode.SLEEP: "sleep", Opcode.WAIT_FOR_EVENT: "wait",
              Opcode.INVOKE_FUNCTION: "invoke"}


def _error(name: str, message: str) -> CallError:
    return CallError(message, {"name": name, "message": message, "error": message})


class CallWatch:
    def __init__(self, ops: Operations, item: QueueItem, token: str, state: CallState,
                 fn: FunctionConfig, now: int) -> None:
        self.ops = ops
        self.item = item
        self.fn = fn
        self.started = now
        self.call_id = call_id_of(item.id, token)
        self.headers = {CALL_HEADER: self.call_id}
        self.limits = StepLimits.of(item.limits.get(item.step_id)) if item.limits else None
        timeouts = [t for t in (self.limits and self.limits.timeout_ms,
                                fn.agent.step_timeout_ms) if t]
        self.timeout_ms = min(timeouts) if timeouts else None
        self.heartbeat_ms = self.limits.heartbeat_ms if self.limits else None
        self.stop = ops.usage.over_budget(fn, state.run)  # the budget is spent: no call
        flagged = state.run.get(b"stalled_since")
        self.flagged = flagged is not None  # stalled before this call: clear once it answers
        self.ended: CallError | None = None  # the executor ended the call (timeout, silence)
        self.recorded: Recorded | None = None
        self._stall: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False  # the call answered or was ended: no more stall checks
        self.span: Span | None = None
        self.trace = state.run.get(b"trace")  # the run's span context (when tracing)
        if ops.tracing is not None and self.stop is None:
            self.span, self.headers["traceparent"] = ops.tracing.start_call(
                item.run_id, state.run.get(b"trace"), now, {
                    "inngest.run_id": item.run_id, "inngest.function": fn.id,
                    "inngest.step_id": item.step_id, "inngest.attempt": item.attempt + 1})

    @property
    def step_name(self) -> str | None:
        """The step this call targets: its name when it declared limits, else its id."""
        if self.limits and self.limits.name:
            return self.limits.name
        return self.item.step_id if self.item.step_id != "step" else None

    @property
    def step_label(self) -> str:
        return f"step {self.step_name!r}" if self.step_name else "the run's next step"

    def step_op(self) -> dict[str, Any] | None:
        """The op naming the step this call targeted (for its step record), if known."""
        if self.item.step_id == "step":
            return None
        return {"id": self.item.step_id, "op": "StepRun", "displayName": self.step_name}

    # -- during the call -----------------------------------------------------------------
    async def run(self, call: Coroutine[Any, Any, Outcome]) -> Outcome:
        """Await the call within its limits; ending it returns a failed attempt's error."""
        threshold = self.ops.stalls.threshold_ms(self.fn)
        self._arm(threshold, threshold)
        try:
            if self.timeout_ms is None and self.heartbeat_ms is None:
                return await call
            task = asyncio.ensure_future(call)
            try:
                return await self._within_limits(task)
            finally:
                if not task.done():
                    task.cancel()  # closes the request: a late answer is dropped
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        finally:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()

    async def _within_limits(self, task: asyncio.Future[Outcome]) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms / 1000 if self.timeout_ms else None
        check_s = min(max(self.heartbeat_ms / 4000, 0.05), 5.0) if self.heartbeat_ms else None
        while True:
            waits = [w for w in (deadline and deadline - loop.time(), check_s) if w is not None]
            done, _ = await asyncio.wait({task}, timeout=max(min(waits), 0))
            if done:
                return task.result()
            if deadline is not None and loop.time() >= deadline:
                return self._end("StepTimeoutError", (
                    f"{self.step_label} did not finish within {span_text(self.timeout_ms or 0)}"
                    " (step timeout): the call was ended"))
            if self.heartbeat_ms:
                last = await self.ops.heartbeats.last(self.call_id) or self.started
                if self.ops.clock() - last > self.heartbeat_ms:
                    return self._end("HeartbeatTimeoutError", (
                        f"{self.step_label} sent no heartbeat for over "
                        f"{span_text(self.heartbeat_ms)} (heartbeat timeout): the call was "
                        "ended"))

    def _end(self, name: str, message: str) -> CallError:
        log.warning("run %s: %s", self.item.run_id, message)
        self.ended = _error(name, message)
        return self.ended

    def _arm(self, delay_ms: int, threshold: int) -> None:
        """The stall timer: one per call, no polling; fires once the call is quiet."""
        self._timer = asyncio.get_running_loop().call_later(
            delay_ms / 1000, lambda: setattr(self, "_stall", asyncio.ensure_future(
                self._flag(threshold))))

    async def _flag(self, threshold: int) -> None:
        try:
            last = await self.ops.heartbeats.last(self.call_id)
            quiet = self.ops.clock() - (last or self.started)
            if quiet < threshold:  # the body beats: it is working, not stalled
                if not self._done:
                    self._arm(threshold - quiet, threshold)
                return
            what = f"the call for {self.step_label} (attempt {self.item.attempt + 1})"
            reason = (f"no heartbeat or checkpoint from {what} for over {span_text(threshold)}"
                      if last
                      else f"no answer from the app for over {span_text(threshold)}: {what} "
                           "is still running")
            self.flagged = True
            await self.ops.stalls.flag(self.item.run_id, last or self.started, reason)
        except Exception:
            log.exception("run %s: flagging a stall failed", self.item.run_id)

    # -- after the answer ----------------------------------------------------------------
    async def record(self, outcome: Outcome, now: int) -> None:
        """Before the outcome is acted on: record its usage (the budget sees it), and clear
        a stall flag (the run moved)."""
        if self._stall is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stall, 5)
        found = report_of(outcome)
        if found is not None:
            op, report = found
            try:
                self.recorded = await self.ops.usage.record(
                    self.item.run_id, self.fn.id, self.call_id, str(op.get("id") or ""),
                    step_name(op), self.item.attempt + 1, report, now)
            except Exception:
                log.exception("run %s: recording usage failed", self.item.run_id)
            if self.recorded is not None:
                self.ops.metrics.usage(self.fn.id, self.recorded.delta)
        if self.flagged:
            try:
                await self.ops.stalls.clear(self.item.run_id)
            except Exception:
                log.exception("run %s: clearing its stall flag failed", self.item.run_id)

    def drop(self, now: int) -> None:
        """An eager call whose answer is dropped (its run was not stored, or planned again):
        its span ends, named so; no metric counts it."""
        if self.span is not None and self.ops.tracing is not None:
            try:
                self.ops.tracing.end_call(self.span, "call (dropped)", now, {}, None)
            except Exception:
                log.exception("run %s: ending a dropped call's span failed", self.item.run_id)

    def end(self, outcome: Outcome, now: int) -> None:
        """After the outcome was acted on: the span and the duration histogram (telemetry:
        a failure here is logged, never raised into the run's handling). Steps sent with the
        function's end get theirs as checkpointed steps do (operations.checkpointed), and
        carry the usage the answer reported (the call's span then does not, so that spans
        summed count it once)."""
        try:
            name, status, error = self.describe(outcome)
            self.ops.metrics.step(self.fn.id, status, (now - self.started) / 1000)
            # steps sent with the end (only if they can all have been saved: else the run
            # failed on them, opcodes._complete_with_steps)
            folded = (outcome.steps() if isinstance(outcome, Ops) and outcome.ends() else [])
            if not all(Opcode.parse(op.get("op")) in RUN_OPS and op.get("id") for op in folded):
                folded = []
            for op in folded:
                started, ended = step_times(op, self.started, now)
                self.ops.metrics.step(self.fn.id, "Completed", (ended - started) / 1000)
            if self.span is None or self.ops.tracing is None:
                return
            spent = self.recorded.totals() if self.recorded else {}
            self.ops.tracing.end_call(self.span, name, now, {
                "inngest.step": name.partition(" ")[2] or None, "inngest.status": status,
                "inngest.error": error, **({} if folded else usage_attributes(spent)),
                "inngest.call_id": self.call_id}, error)
            for op in folded:
                self._step_span(op, spent if len(folded) == 1 else {}, now)
        except Exception:
            log.exception("run %s: recording the call's span and metrics failed",
                          self.item.run_id)

    def _step_span(self, op: dict[str, Any], spent: dict[str, float], now: int) -> None:
        """A step the call ran and sent with the function's end: a child of the call's span,
        from when its body ran."""
        assert self.ops.tracing is not None
        name = step_name(op)
        started, ended = step_times(op, self.started, now)
        self.ops.tracing.step_span(
            self.item.run_id, self.trace, self.headers.get("traceparent"), f"step {name}",
            started, ended, step_attributes(self.item.run_id, self.fn.id, op, name,
                                            self.item.attempt + 1, spent))

    def describe(self, outcome: Outcome) -> tuple[str, str, str | None]:
        """(span name, status, error) of the call's outcome."""
        attempts_left = self.item.attempt + 1 < self.item.max_attempts
        if isinstance(outcome, Completed):
            return "finish", "Completed", None
        if isinstance(outcome, CallError):
            status = "Retrying" if outcome.retriable and attempts_left else "Failed"
            name = f"step {self.step_name}" if self.step_name else "call"
            return name, status, outcome.message
        assert isinstance(outcome, Ops)
        if outcome.ends():  # alone, or after the steps that go with the end
            return "finish", "Completed", None
        if len(outcome.ops) != 1:
            return f"plan {len(outcome.ops)} steps", "Planned", None
        op = outcome.ops[0]
        kind = Opcode.parse(op.get("op"))
        name = step_name(op)
        if kind is Opcode.STEP_ERROR:
            error = op.get("error") or {}
            status = "Failed" if outcome.no_retry or not attempts_left else "Retrying"
            return f"step {name}", status, str(error.get("message") or "step failed")
        if kind is Opcode.STEP_FAILED:
            return f"step {name}", "Failed", str((op.get("error") or {}).get("message") or "")
        if kind is Opcode.STEP_PLANNED:
            return f"plan {name}", "Planned", None
        if kind is None or kind not in STATUS_OF_OP:
            return str(op.get("op")), "Completed", None
        return f"{VERB_OF_OP.get(kind, 'step')} {name}", STATUS_OF_OP[kind], None
