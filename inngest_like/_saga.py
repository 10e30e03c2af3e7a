"""Sagas: undo side effects in reverse order when a later step fails for good.

    async with inngest.Saga(step) as saga:
        flight = await step.run("book-flight", book_flight, trip)
        saga.add("cancel-flight", cancel_flight, flight["id"])
        hotel = await step.run("book-hotel", book_hotel, trip)
        saga.add("cancel-hotel", cancel_hotel, hotel["id"])
        await step.run("create-itinerary", create_itinerary, flight, hotel)

If a step inside the block raises (a `StepError` once its retries are spent), the registered
compensations run newest first, each as its own memoized step (so a crash mid-compensation
resumes it without cancelling anything twice), then the error propagates and the run fails.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from ._step import Step


class Saga:
    def __init__(self, step: Step) -> None:
        self._step = step
        self._compensations: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []

    def add(self, step_id: str, handler: Callable[..., Any], *args: Any) -> None:
        """Register the step that undoes what was just done."""
        self._compensations.append((step_id, handler, args))

    async def compensate(self) -> list[Any]:
        """Run every registered compensation, newest first; returns their outputs."""
        results = []
        for step_id, handler, args in reversed(self._compensations):
            results.append(await self._step.run(step_id, handler, *args))
        return results

    async def __aenter__(self) -> Saga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # Only real failures compensate: the engine's interrupts are BaseException, not
        # Exception, so a step that is merely being scheduled never triggers this.
        if isinstance(exc, Exception):
            await self.compensate()
        return False
