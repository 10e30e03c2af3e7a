"""`inngest_like.usage(...)`: a step body reports what it spent (tokens, dollars).

Several calls add up. The usage travels with the step's answer (StepRun, StepError,
StepFailed) as an extra `usage` field official executors ignore; inngest_like's executor
adds it to the step's, the run's and the function's totals, checks the function's budget
against it, and puts it on the step's span. With that executor the SDK also sends it at
once (and with each heartbeat), so usage reported by an attempt that then hangs and is
ended still counts: providers bill failed calls.
"""

from __future__ import annotations

import asyncio
import logging
import math

from . import _heartbeat
from ._scope import StepScope, current_step

log = logging.getLogger("inngest_like")
_warned = False


def usage(model: str = "unknown", *, input_tokens: int = 0, output_tokens: int = 0,
          cost_usd: float = 0.0) -> None:
    """Report usage of the step body this runs in, e.g. after an LLM call (also one that
    failed, if the provider bills it). Outside a step body it is ignored (with a warning
    once): code outside steps re-runs on every replay, so it cannot be metered per run."""
    global _warned
    for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"usage(): {name} must be a non-negative integer, got {value!r}")
    if (isinstance(cost_usd, bool) or not isinstance(cost_usd, int | float)
            or not math.isfinite(cost_usd) or cost_usd < 0):
        raise ValueError(f"usage(): cost_usd must be a non-negative number, got {cost_usd!r}")
    scope = current_step()
    if scope is None:
        if not _warned:
            _warned = True
            log.warning("inngest_like.usage() called outside a step body: ignored")
        return
    scope.add(str(model) or "unknown", input_tokens, output_tokens, float(cost_usd))
    if scope.beats:
        _flush_soon(scope)


def _flush_soon(scope: StepScope) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # a sync function's thread: the usage goes with the step's answer
    if scope.flushing is None or scope.flushing.done():
        scope.flushing = loop.create_task(_flush(scope))


async def _flush(scope: StepScope) -> None:
    while scope.dirty:  # usage() calls during a send are sent next, not lost
        await _heartbeat.send(scope)
