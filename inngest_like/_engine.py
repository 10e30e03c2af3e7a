"""The sans-IO step engine: step-id hashing, memo replay, and opcode construction.

One `Dispatch` lives for one call request. Each time the function reaches a step it asks
the dispatch: is there a memo (replay it), may this step run now (execute it and interrupt
with StepRun / StepError / StepFailed), or must it only be reported (StepPlanned, Sleep, ...).
Nothing here does I/O: the handler feeds in the request and turns the outcome into HTTP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import traceback
from typing import Any, NoReturn

import pydantic

from . import wire
from ._errors import (
    NonRetriableError,
    RetryAfterError,
    StepError,
    StepUnexpectedError,
    _Interrupt,
)
from .wire import DISCOVERY_STEP, Opcode


def hash_step_id(user_id: str, index: int) -> str:
    """Lowercase hex SHA-1 of the user id; the n-th repeat (n >= 1) hashes `id:n`."""
    raw = user_id if index == 0 else f"{user_id}:{index}"
    return hashlib.sha1(raw.encode()).hexdigest()


def to_json(value: Any) -> Any:
    """Turn a step or function output into a JSON value (pydantic models become dicts)."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def error_body(exc: BaseException) -> dict[str, Any]:
    """The error object of the wire protocol: name, message, stack."""
    if isinstance(exc, StepError):
        return {"name": exc.name, "message": exc.message, "stack": exc.stack or ""}
    message = getattr(exc, "message", None) or str(exc)
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"name": type(exc).__name__, "message": message, "stack": stack}


@dataclasses.dataclass(frozen=True)
class StepInfo:
    user_id: str
    index: int
    hashed: str
    # what the step declared for the executor to enforce ({"timeout": "30s",
    # "heartbeatTimeout": "10s"}): such a step is planned, so its call is made knowing them
    limits: dict[str, str] | None = None

    def op(self, opcode: Opcode, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.hashed,
            "op": opcode,
            "displayName": self.user_id,
            "name": self.user_id,
            "userland": {"id": self.user_id, "index": self.index},
        }
        body.update(fields)
        return body

    def planned(self) -> dict[str, Any]:
        """The StepPlanned op of this step (with its limits as `opts`, if any)."""
        return self.op(Opcode.STEP_PLANNED, **({"opts": self.limits} if self.limits else {}))


class _Missing:
    pass


MISSING: Any = _Missing()


class Dispatch:
    """Per-call engine state."""

    def __init__(
        self,
        *,
        memos: dict[str, Any],
        target_step: str = DISCOVERY_STEP,
        attempt: int = 0,
        max_attempts: int | None = None,
        disable_immediate_execution: bool = False,
        run_id: str = "",
        enforces_limits: bool = False,
    ) -> None:
        self._memos = dict(memos)
        self.run_id = run_id
        self.target_step = target_step or DISCOVERY_STEP
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.disable_immediate_execution = disable_immediate_execution
        # the executor ends steps that overrun their timeouts (inngest_like's does)
        self.enforces_limits = enforces_limits
        self.in_parallel = False
        self._seen: dict[str, int] = {}
        # asyncio.gather of steps: the new steps reached together, and whether they were
        # reported; the Step API fills these in, the engine only decides
        self.arrivals: list[StepInfo] = []
        # the opcode each arrival is reported with in a group: StepPlanned for a step.run,
        # its own opcode for a sleep, wait or invoke
        self.arrival_ops: dict[str, dict[str, Any]] = {}
        self.reported = False
        self.parked: list[Any] = []  # tasks waiting for the call to end, cancelled after it

    # -- identity ---------------------------------------------------------------------
    def begin(self, user_id: str) -> StepInfo:
        if not isinstance(user_id, str) or not user_id:
            raise TypeError("a step id must be a non-empty string")
        index = self._seen.get(user_id, 0)
        self._seen[user_id] = index + 1
        return StepInfo(user_id, index, hash_step_id(user_id, index))

    def peek(self, user_id: str) -> str:
        """The hashed id the next `begin(user_id)` will give, without counting it."""
        return hash_step_id(user_id, self._seen.get(user_id, 0))

    # -- replay -----------------------------------------------------------------------
    def memo(self, info: StepInfo, model: type[pydantic.BaseModel] | None = None) -> Any:
        """The memoized output of a step, MISSING if it has none; raises StepError for a
        memoized failure so user code can catch it and compensate."""
        if info.hashed not in self._memos:
            return MISSING
        value = self._memos.pop(info.hashed)
        if isinstance(value, dict) and set(value) == {"error"}:
            err = value["error"] or {}
            raise StepError(
                str(err.get("message", "")), str(err.get("name", "Error")), err.get("stack")
            )
        if isinstance(value, dict) and set(value) == {"data"}:
            value = value["data"]
        if model is not None and value is not None:
            return model.model_validate(value)
        return value

    # -- deciding what a new step does --------------------------------------------------
    def limit(self, info: StepInfo, timeout: str | None, heartbeat_timeout: str | None
              ) -> StepInfo:
        """`info` with the step's declared limits, when the executor enforces them."""
        if not self.enforces_limits or not (timeout or heartbeat_timeout):
            return info
        limits = {wire.TIMEOUT_OPT: timeout, wire.HEARTBEAT_TIMEOUT_OPT: heartbeat_timeout}
        return dataclasses.replace(info, limits={k: v for k, v in limits.items() if v})

    def gate(self, info: StepInfo) -> None:
        """Return if this new step.run may execute now; otherwise interrupt."""
        if self.target_step != DISCOVERY_STEP:
            if self.target_step == info.hashed:
                return
            if self.in_parallel:
                raise _Interrupt([])  # another step of the group is targeted: skip this one
            raise StepUnexpectedError(
                f"step {info.user_id!r} was reached while the executor targeted step "
                f"{self.target_step}; is the function deterministic?"
            )
        if self.in_parallel or self.disable_immediate_execution or info.limits:
            raise _Interrupt([info.planned()])

    def settle(self, info: StepInfo) -> bool:
        """After the new steps reached together have arrived: True if `info` may go on to
        `gate` (run now, or fail as unexpected); False if it must park until the call ends.
        Raises the StepPlanned interrupt for a group of several (once)."""
        if self.target_step != DISCOVERY_STEP:
            if info.hashed == self.target_step:
                return True
            # a sibling of the targeted step: wait while the target runs
            return not any(a.hashed == self.target_step for a in self.arrivals)
        if len(self.arrivals) <= 1:
            return True
        if self.reported:
            return False
        self.reported = True
        raise _Interrupt([self.arrival_ops.get(a.hashed) or a.planned()
                          for a in self.arrivals])

    def report(self, info: StepInfo, opcode: Opcode, **fields: Any) -> NoReturn:
        """Interrupt with a non-run opcode (Sleep, WaitForEvent, InvokeFunction). While the
        executor targets another step, a sibling in a group is skipped, like a step.run."""
        if self.target_step not in (DISCOVERY_STEP, info.hashed):
            if self.in_parallel:
                raise _Interrupt([])
            raise StepUnexpectedError(
                f"step {info.user_id!r} was reached while the executor targeted step "
                f"{self.target_step}; is the function deterministic?"
            )
        raise _Interrupt([info.op(opcode, **fields)])

    def ran(self, info: StepInfo, output: Any, usage: dict[str, Any] | None = None) -> NoReturn:
        raise _Interrupt([self.run_op(info, output, usage)])

    def run_op(self, info: StepInfo, output: Any,
               usage: dict[str, Any] | None = None) -> dict[str, Any]:
        """`usage`: what the body reported (`inngest_like.usage`), an extra field."""
        extra = {wire.USAGE_FIELD: usage} if usage else {}
        return info.op(Opcode.STEP_RUN, data=to_json(output), **extra)

    def may_checkpoint(self) -> bool:
        """A step that just ran may be checkpointed (and the function go on in this request)
        only in a discovery call outside a parallel group, as JS v4 does; a retried call
        (attempt > 0) answers after its step so the next one starts at attempt 0."""
        return (self.target_step == DISCOVERY_STEP and not self.in_parallel
                and not self.disable_immediate_execution and self.attempt == 0)

    def checkpointed(self, value: Any, model: type[pydantic.BaseModel] | None) -> Any:
        """A step ran and is being persisted mid-request: it is settled (the next step to
        arrive is a new arrival, not its sibling), and the function goes on with `value`, the
        value a later replay would give (its output as written: JSON, or the pydantic model),
        so it sees the same either way."""
        self.arrivals.clear()
        self.arrival_ops.clear()
        self.reported = False
        if model is not None and value is not None:
            return model.model_validate(value)
        return value

    def failed(self, info: StepInfo, exc: BaseException,
               usage: dict[str, Any] | None = None) -> NoReturn:
        body = error_body(exc)
        extra = {wire.USAGE_FIELD: usage} if usage else {}  # a failed attempt's spend counts
        last = self.max_attempts is not None and self.attempt + 1 >= self.max_attempts
        if isinstance(exc, NonRetriableError) or last:
            raise _Interrupt([info.op(Opcode.STEP_FAILED, error=body, **extra)])
        retry_after = exc.retry_after_header() if isinstance(exc, RetryAfterError) else None
        raise _Interrupt([info.op(Opcode.STEP_ERROR, error=body, **extra)],
                         retry_after=retry_after)
