"""Continue the executor's trace: a call carries `traceparent` (the span of this step
attempt) when the executor traces; while the function runs, that span context is the
current OpenTelemetry context, so spans that user code (or an httpx / OpenAI instrumentor)
creates inside a step nest under the step's span. Costs nothing without a `traceparent`
header or without opentelemetry-api installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any


def continued(headers: Mapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    traceparent = headers.get("traceparent")
    if not traceparent:
        return contextlib.nullcontext()
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return contextlib.nullcontext()
    carrier = {"traceparent": traceparent}
    if headers.get("tracestate"):
        carrier["tracestate"] = headers["tracestate"]
    return _attached(context, TraceContextTextMapPropagator().extract(carrier))


@contextlib.contextmanager
def _attached(context: Any, ctx: Any) -> Iterator[None]:
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)
