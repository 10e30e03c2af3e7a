"""What a function receives besides `step`: the triggering event(s) and run identity."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ._event import Event
from ._step import Step, StepSync

T = TypeVar("T")


class Group:
    """`ctx.group.parallel((lambda: step.run(...), ...))`, as in the official SDK."""

    def __init__(self, step: Step | StepSync) -> None:
        self._step = step

    def parallel(self, callables: Sequence[Callable[[], Any]]) -> Any:
        return self._step.parallel(callables)


@dataclasses.dataclass
class Context:
    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    step: Step | StepSync
    group: Group
    logger: logging.Logger
    fn_id: str = ""

    def idempotency_key(self, step_id: str) -> str:
        """A key stable across retries and replays of `step_id` in this run, for passing to
        payment or e-mail APIs; different in every other run."""
        return f"{self.run_id}:{step_id}"


ParallelCallable = Callable[[], Awaitable[T]]
