"""The `step` object handed to functions: each method is one durable, memoized step.

`Step` is for async functions, `StepSync` for sync ones (run in a thread pool). Both defer
every decision to the sans-IO `Dispatch`; only executing the user's callable and sending
events happen here.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import time
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import orjson
import pydantic

from . import wire
from ._checkpoint import Checkpointer
from ._engine import MISSING, Dispatch, StepInfo
from ._errors import _Interrupt
from ._event import Event
from ._scope import step_scope

T = TypeVar("T")

# Event-loop turns a new step waits so that steps started together (asyncio.gather) are seen
# together and planned as parallel calls. Memo hits never wait.
SETTLE_TURNS = 3

Duration = int | float | datetime.timedelta
_NonRun = tuple[StepInfo, Any, dict[str, Any]]  # a sleep, wait or invoke: step, memo, opcode


def _return_model(handler: Callable[..., Any]) -> type[pydantic.BaseModel] | None:
    """The pydantic model named by the callable's return annotation, if any. Called for
    every replayed memo, so the common case (a lambda, no annotation) returns at once."""
    if "return" not in getattr(handler, "__annotations__", {}):
        return None
    return _annotated_model(handler)


@functools.lru_cache(maxsize=1024)
def _annotated_model(handler: Callable[..., Any]) -> type[pydantic.BaseModel] | None:
    try:
        hint = typing.get_type_hints(handler).get("return")
    except Exception:
        return None
    if inspect.isclass(hint) and issubclass(hint, pydantic.BaseModel):
        return hint
    return None


def render_duration(duration: Duration) -> str:
    """Seconds or a timedelta as a Go-style duration string (`90s`, `1500ms`)."""
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration
    if seconds < 0:
        seconds = 0
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _limit(what: str, duration: Duration | None) -> str | None:
    """A step's timeout or heartbeat timeout on the wire (None when not set)."""
    if duration is None:
        return None
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValueError(f"step.run(): {what} must be a positive duration, got {duration!r}")
    return render_duration(duration)


def _seconds(duration: Duration | None) -> float | None:
    if duration is None:
        return None
    return duration.total_seconds() if isinstance(duration, datetime.timedelta) else duration


def _events_of(
    first: str, events: Event | Sequence[Event] | None, data: dict[str, Any] | None
) -> tuple[str, list[Event]]:
    """Both call forms: (step_id, events) as in the official SDK, or (name, data=...)."""
    if events is None:
        return first, [Event(name=first, data=data or {})]
    if isinstance(events, Event):
        return first, [events]
    return first, list(events)


def _with_ids(events: list[Event], run_id: str, hashed_step: str) -> list[Event]:
    """Give each event without an id one derived from the run and the step, so a send that
    is executed again (a crash before its memo was saved) repeats the same ids and the
    executor's idempotent ingest drops the duplicates. Ids the user set are kept."""
    if not run_id:
        return events
    return [e if e.id else e.model_copy(update={"id": f"{run_id}-{hashed_step}-{i}"})
            for i, e in enumerate(events)]


class _StepBase:
    def __init__(self, dispatch: Dispatch, send: Callable[[list[Event]], Any],
                 checkpoint: Checkpointer | None = None) -> None:
        self._dispatch = dispatch
        self._send = send
        self._checkpoint = checkpoint  # async functions only: the save is I/O

    # Non-run steps only ever replay a memo or report an opcode: no I/O, shared by both kinds.
    # Each returns (step, memo or MISSING, the opcode to report when there is no memo).
    def _sleep_until_op(self, step_id: str, until: datetime.datetime) -> _NonRun:
        info = self._dispatch.begin(step_id)
        return info, self._dispatch.memo(info), {
            "op": wire.Opcode.SLEEP, "name": wire.rfc3339(until), "opts": {"until": wire.rfc3339(until)}}

    def _sleep_op(self, step_id: str, duration: Duration) -> _NonRun:
        info = self._dispatch.begin(step_id)
        rendered = render_duration(duration)
        return info, self._dispatch.memo(info), {
            "op": wire.Opcode.SLEEP, "name": rendered, "opts": {"duration": rendered}}

    def _wait_op(
        self, step_id: str, event: str, if_exp: str | None, timeout: Duration,
        lookback: Duration | None = None,
    ) -> _NonRun:
        info = self._dispatch.begin(step_id)
        opts: dict[str, Any] = {"event": event, "timeout": render_duration(timeout)}
        if if_exp:
            opts["if"] = if_exp
        if lookback is not None:
            opts["lookback"] = render_duration(lookback)  # ours: Inngest has no lookback
        return info, self._dispatch.memo(info), {"op": wire.Opcode.WAIT_FOR_EVENT, "name": event,
                                                 "opts": opts}

    def _invoke_op(
        self, step_id: str, function_id: str, data: dict[str, Any] | None, timeout: Duration | None
    ) -> _NonRun:
        info = self._dispatch.begin(step_id)
        opts: dict[str, Any] = {"function_id": function_id, "payload": {"data": data or {}}}
        if timeout is not None:
            opts["timeout"] = render_duration(timeout)
        return info, self._dispatch.memo(info), {"op": wire.Opcode.INVOKE_FUNCTION, "opts": opts}

    def _report(self, info: StepInfo, op: dict[str, Any]) -> NoReturn:
        fields = {k: v for k, v in op.items() if k != "op"}
        self._dispatch.report(info, op["op"], **fields)

    def _memo_or_gate(self, step_id: str, handler: Callable[..., Any],
                      timeout: Duration | None = None,
                      heartbeat_timeout: Duration | None = None) -> tuple[StepInfo, Any]:
        info = self._dispatch.begin(step_id)
        found = self._dispatch.memo(info, _return_model(handler))
        if found is MISSING:
            info = self._dispatch.limit(info, _limit("timeout", timeout),
                                        _limit("heartbeat_timeout", heartbeat_timeout))
            self._dispatch.gate(info)
        return info, found


def _function_id(function: Any) -> str:
    return function if isinstance(function, str) else str(function.id)


def _event_or_none(found: Any) -> Event | None:
    return None if found is None else Event.model_validate(found)


class Step(_StepBase):
    """Durable steps for async functions."""

    async def run(self, step_id: str, handler: Callable[..., Any], *args: Any,
                  timeout: Duration | None = None,
                  heartbeat_timeout: Duration | None = None) -> Any:
        """Run `handler(*args)` once; later calls return its memoized output.

        With inngest_like's executor, an attempt that runs longer than `timeout`, or whose
        body stops calling `await inngest_like.heartbeat()` for `heartbeat_timeout`, is
        ended and counts as a failed attempt (retried with backoff). Seconds or timedelta.
        """
        dispatch = self._dispatch
        info = dispatch.begin(step_id)
        found = dispatch.memo(info, _return_model(handler))
        if found is not MISSING:
            return found
        info = dispatch.limit(info, _limit("timeout", timeout),
                              _limit("heartbeat_timeout", heartbeat_timeout))
        if not dispatch.in_parallel:
            await self._settle(info)
        dispatch.gate(info)
        checkpoint = self._checkpoint
        if checkpoint is not None:
            # the step before this one is saved before this one's body starts
            unsaved = await checkpoint.flush()
            if unsaved is not None:
                raise _Interrupt([unsaved])  # not persisted: the plain protocol saves it
        began, clock = time.time_ns(), time.perf_counter_ns()
        with step_scope(info.hashed, step_id, _seconds(heartbeat_timeout)) as scope:
            try:
                output = handler(*args)
                if inspect.isawaitable(output):
                    output = await output
            except _Interrupt:
                raise
            except Exception as exc:
                self._dispatch.failed(info, exc, scope.report())
        usage = scope.report()  # the spend the body reported: it goes with the step's op
        if checkpoint is not None and dispatch.may_checkpoint():
            op = dispatch.run_op(info, output, usage)
            try:
                # written now: the function may change the value it gets before the step is
                # saved, and an output that cannot be written fails here, the plain way
                data = orjson.dumps(op["data"])
            except TypeError:
                self._dispatch.ran(info, output, usage)
            op["data"] = orjson.Fragment(data)
            # when the body ran, as Go's interval.Interval (JS sends the same: start and
            # duration in ns): the record of a step saved after its call went on
            op["timing"] = {"a": began, "b": time.perf_counter_ns() - clock}
            checkpoint.hold(op)  # saved before the next step's body runs (_checkpoint.py)
            return dispatch.checkpointed(orjson.loads(data), _return_model(handler))
        self._dispatch.ran(info, output, usage)

    async def _settle(self, info: StepInfo, op: dict[str, Any] | None = None) -> None:
        """Wait a few loop turns for the siblings of an asyncio.gather: several new steps
        reached together are reported together (`op` is how a non-run step reports itself),
        then run as parallel calls."""
        dispatch = self._dispatch
        dispatch.arrivals.append(info)
        if op is not None:
            dispatch.arrival_ops[info.hashed] = info.op(
                op["op"], **{k: v for k, v in op.items() if k != "op"})
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
        if not dispatch.settle(info):
            # parked: the call ends with a sibling's answer; the handler cancels this task
            dispatch.parked.append(asyncio.current_task())
            await asyncio.get_running_loop().create_future()

    async def send_event(
        self,
        step_id: str,
        events: Event | Sequence[Event] | None = None,
        *,
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        """Send events as a memoized step (a replay does not send twice); returns their ids."""
        step_id, batch = _events_of(step_id, events, data)
        batch = _with_ids(batch, self._dispatch.run_id, self._dispatch.peek(step_id))

        async def send() -> list[str]:
            ids = self._send(batch)
            return list(await ids if inspect.isawaitable(ids) else ids)

        result: list[str] = await self.run(step_id, send)
        return result

    async def _non_run(self, step: _NonRun) -> Any:
        info, found, op = step
        if found is not MISSING:
            return found
        if not self._dispatch.in_parallel:
            await self._settle(info, op)
        self._report(info, op)

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Pause the run for `duration` (seconds or timedelta); holds no worker meanwhile."""
        await self._non_run(self._sleep_op(step_id, duration))

    async def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        await self._non_run(self._sleep_until_op(step_id, until))

    async def wait_for_event(
        self, step_id: str, *, event: str, if_exp: str | None = None, timeout: Duration,
        lookback: Duration | None = None,
    ) -> Event | None:
        """The first matching event after the wait began (or up to `lookback` before it),
        or None on timeout. `if_exp` is CEL over `event` (this run's trigger) and `async`."""
        return _event_or_none(
            await self._non_run(self._wait_op(step_id, event, if_exp, timeout, lookback)))

    async def invoke(
        self,
        step_id: str,
        *,
        function: Any,
        data: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        return await self._non_run(self._invoke_op(step_id, _function_id(function), data,
                                                   timeout))

    async def parallel(self, callables: Sequence[Callable[[], Awaitable[T]]]) -> tuple[T, ...]:
        """Run several steps as parallel calls; returns their results in order."""
        dispatch = self._dispatch
        results: list[T] = []
        ops: list[dict[str, Any]] = []
        dispatch.in_parallel = True
        try:
            for call in callables:
                try:
                    results.append(await call())
                except _Interrupt as interrupt:
                    ops.extend(interrupt.ops)
        finally:
            dispatch.in_parallel = False
        if len(results) < len(callables):
            raise _Interrupt(ops)
        return tuple(results)


class StepSync(_StepBase):
    """Durable steps for sync functions (which run in a thread pool)."""

    def run(self, step_id: str, handler: Callable[..., Any], *args: Any,
            timeout: Duration | None = None,
            heartbeat_timeout: Duration | None = None) -> Any:
        """As `Step.run`; a sync body beats with `inngest_like.heartbeat_sync()`."""
        info, found = self._memo_or_gate(step_id, handler, timeout, heartbeat_timeout)
        if found is not MISSING:
            return found
        with step_scope(info.hashed, step_id, _seconds(heartbeat_timeout)) as scope:
            try:
                output = handler(*args)
            except _Interrupt:
                raise
            except Exception as exc:
                self._dispatch.failed(info, exc, scope.report())
        self._dispatch.ran(info, output, scope.report())

    def send_event(
        self,
        step_id: str,
        events: Event | Sequence[Event] | None = None,
        *,
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        step_id, batch = _events_of(step_id, events, data)
        batch = _with_ids(batch, self._dispatch.run_id, self._dispatch.peek(step_id))
        result: list[str] = self.run(step_id, lambda: list(self._send(batch)))
        return result

    def _non_run(self, step: _NonRun) -> Any:
        info, found, op = step
        if found is not MISSING:
            return found
        self._report(info, op)

    def sleep(self, step_id: str, duration: Duration) -> None:
        self._non_run(self._sleep_op(step_id, duration))

    def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        self._non_run(self._sleep_until_op(step_id, until))

    def wait_for_event(
        self, step_id: str, *, event: str, if_exp: str | None = None, timeout: Duration,
        lookback: Duration | None = None,
    ) -> Event | None:
        return _event_or_none(
            self._non_run(self._wait_op(step_id, event, if_exp, timeout, lookback)))

    def invoke(
        self,
        step_id: str,
        *,
        function: Any,
        data: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        return self._non_run(self._invoke_op(step_id, _function_id(function), data, timeout))

    def parallel(self, callables: Sequence[Callable[[], T]]) -> tuple[T, ...]:
        dispatch = self._dispatch
        results: list[T] = []
        ops: list[dict[str, Any]] = []
        dispatch.in_parallel = True
        try:
            for call in callables:
                try:
                    results.append(call())
                except _Interrupt as interrupt:
                    ops.extend(interrupt.ops)
        finally:
            dispatch.in_parallel = False
        if len(results) < len(callables):
            raise _Interrupt(ops)
        return tuple(results)
