"""What code in a step body can learn of the call it runs in, for `usage()` and
`heartbeat()`: the run, the attempt, the step, and the call id that inngest_like's executor
sends with each call (`X-Inngest-Like-Call`; Inngest's executors send none, and then
heartbeats are no-ops). Context variables, so concurrent calls and parallel steps each see
their own; the handler copies the context into the thread of a sync function.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from ._client import Inngest

CALL_HEADER = wire.CALL_HEADER.lower()  # the handler's headers are lower case


@dataclasses.dataclass
class CallScope:
    run_id: str
    attempt: int
    call_id: str | None  # None: the executor takes no heartbeats (Inngest's)
    client: Inngest


@dataclasses.dataclass
class StepScope:
    """One execution of one step body: the usage it reported, its heartbeats."""

    call: CallScope | None
    hashed: str
    name: str
    heartbeat_s: float | None = None  # the step's declared heartbeat timeout
    calls: int = 0  # usage() calls: reports of this body only grow, the executor keeps the last
    models: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    last_beat: float = float("-inf")  # monotonic time of the last beat sent
    flushing: asyncio.Task[None] | None = None
    dirty: bool = False

    def add(self, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        tally = self.models.setdefault(model, [0, 0, 0.0])
        tally[0] += input_tokens
        tally[1] += output_tokens
        tally[2] += cost_usd
        self.calls += 1
        self.dirty = True

    def report(self) -> dict[str, Any] | None:
        """The usage this body reported so far (the wire's `usage` field), None if none."""
        if not self.calls:
            return None
        return {"calls": self.calls, "models": {
            name: {"input_tokens": int(t[0]), "output_tokens": int(t[1]),
                   "cost_usd": round(t[2], 12)} for name, t in self.models.items()}}

    @property
    def beats(self) -> bool:
        return self.call is not None and self.call.call_id is not None


_call: contextvars.ContextVar[CallScope | None] = contextvars.ContextVar(
    "inngest_like_call", default=None)
_step: contextvars.ContextVar[StepScope | None] = contextvars.ContextVar(
    "inngest_like_step", default=None)


def current_step() -> StepScope | None:
    return _step.get()


@contextlib.contextmanager
def call_scope(run_id: str, attempt: int, call_id: str | None,
               client: Inngest) -> Iterator[CallScope]:
    scope = CallScope(run_id, attempt, call_id, client)
    token = _call.set(scope)
    try:
        yield scope
    finally:
        _call.reset(token)


@contextlib.contextmanager
def step_scope(hashed: str, name: str, heartbeat_s: float | None) -> Iterator[StepScope]:
    scope = StepScope(_call.get(), hashed, name, heartbeat_s)
    token = _step.set(scope)
    try:
        yield scope
    finally:
        _step.reset(token)
