"""OpenTelemetry traces: one trace per run, a span per call to the app (one step attempt),
exported with the OTel SDK's OTLP/HTTP exporter when the standard `OTEL_*` variables ask for
it. Off (the default), nothing here is imported and a call costs one `is None` check.

The trace id is the run id (a ULID is 128 bits), and the run's root span id derives from it,
so every executor process, and every retry, puts a run's spans in the same trace without
asking anyone; the run hash keeps the pair (`trace`) from the run's start. A call's span is
the child of the root span and its id goes to the app in `traceparent`, so the SDK continues
it and spans made in a step body (by user code, an httpx or OpenAI instrumentor) nest under
the step's span. The root span itself is exported when the run ends, by the process that
ends it, with the run's start and end times.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ulid import ULID

if TYPE_CHECKING:  # imported only when tracing is on
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.trace import Span

log = logging.getLogger("inngest_like.executor")

DEFAULT_SERVICE = "inngest-like-executor"
_PRESET: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "inngest_like_trace_preset", default=None)


def enabled(env: Mapping[str, str]) -> bool:
    """Tracing on? As the OTel SDK reads the standard variables: off when disabled or when
    the traces exporter is `none`; on when it is `otlp` or an OTLP endpoint is set (we do
    not default to exporting to localhost:4318 when nothing was configured)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")
                 if e.strip()}
    if exporters:
        return "otlp" in exporters
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def run_ids(run_id: str) -> tuple[int, int]:
    """(trace id, root span id) of a run: the run's ULID as the trace id (a hash of the id
    when it is not a ULID), and a hash of it as the root span's id."""
    try:
        trace_id = int.from_bytes(ULID.from_str(run_id).bytes, "big")
    except ValueError:
        trace_id = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big")
    span_id = int.from_bytes(hashlib.sha256(b"root:" + run_id.encode()).digest()[:8], "big")
    return trace_id or 1, span_id or 1


def trace_field(run_id: str) -> str:
    trace_id, span_id = run_ids(run_id)
    return f"{trace_id:032x}-{span_id:016x}"


def stored_ids(run_id: str, stored: bytes | None) -> tuple[int, int]:
    """The run's (trace id, root span id): as stored in its hash, else derived."""
    if stored:
        trace_hex, _, span_hex = stored.decode().partition("-")
        try:
            return int(trace_hex, 16), int(span_hex, 16)
        except ValueError:
            pass
    return run_ids(run_id)


def trace_id_of(run_id: str, stored: bytes | None = None) -> str:
    return f"{stored_ids(run_id, stored)[0]:032x}"


def step_attributes(run_id: str, fn_id: str, op: Mapping[str, Any], name: str, attempt: int,
                    spent: Mapping[str, float]) -> dict[str, Any]:
    """The attributes of the span of a step that completed inside a call (checkpointed, or
    sent with the function's end), with the usage its body reported (`spent`)."""
    return {"inngest.run_id": run_id, "inngest.function": fn_id,
            "inngest.step_id": str(op.get("id")), "inngest.step": name,
            "inngest.attempt": attempt, "inngest.status": "Completed", **usage_attributes(spent)}


def usage_attributes(spent: Mapping[str, float]) -> dict[str, Any]:
    """A span's attributes of what a step's body spent (absent keys: none reported)."""
    return {"inngest.cost_usd": spent.get("cost_usd"),
            "gen_ai.usage.input_tokens": spent.get("input_tokens"),
            "gen_ai.usage.output_tokens": spent.get("output_tokens")}


def _ns(ms: int) -> int:
    return int(ms) * 1_000_000


class Tracing:
    def __init__(self, processor: SpanProcessor | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

        class RunIdGenerator(IdGenerator):
            """Random ids, except the root span of a run: its ids are the run's."""

            def __init__(self) -> None:
                self.random = RandomIdGenerator()

            def generate_span_id(self) -> int:
                preset = _PRESET.get()
                return preset[1] if preset else self.random.generate_span_id()

            def generate_trace_id(self) -> int:
                preset = _PRESET.get()
                return preset[0] if preset else self.random.generate_trace_id()

        env = os.environ if env is None else env
        attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": DEFAULT_SERVICE}
        self.provider = TracerProvider(resource=Resource.create(attributes),
                                       id_generator=RunIdGenerator(), shutdown_on_exit=False)
        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            processor = BatchSpanProcessor(OTLPSpanExporter())
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("inngest_like.executor")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Tracing | None:
        env = os.environ if env is None else env
        if not enabled(env):
            return None
        tracing = cls(env=env)
        log.info("tracing on: spans exported over OTLP/HTTP")
        return tracing

    # -- a call: one step attempt ----------------------------------------------------------
    def start_call(self, run_id: str, stored: bytes | None, start_ms: int,
                   attributes: dict[str, Any]) -> tuple[Span, str]:
        """Start the span of one call, child of the run's root span; returns it and the
        `traceparent` header that makes the app continue it."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

        trace_id, root_id = stored_ids(run_id, stored)
        parent = NonRecordingSpan(SpanContext(trace_id, root_id, is_remote=True,
                                              trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        span = self.tracer.start_span("call", context=trace.set_span_in_context(parent),
                                      kind=SpanKind.CLIENT, start_time=_ns(start_ms),
                                      attributes=attributes)
        ctx = span.get_span_context()
        return span, f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    def end_call(self, span: Span, name: str, end_ms: int, attributes: dict[str, Any],
                 error: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span.update_name(name)
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if error:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=_ns(end_ms))

    def step_span(self, run_id: str, stored: bytes | None, traceparent: str | None,
                  name: str, start_ms: int, end_ms: int, attributes: dict[str, Any]) -> None:
        """The span of a step the SDK ran inside a call and checkpointed: a child of that
        call's span (the `traceparent` the SDK sent with the checkpoint), else of the run's
        root span."""
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

        trace_id, parent_id = stored_ids(run_id, stored)
        parts = (traceparent or "").split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            try:
                if int(parts[1], 16) == trace_id:
                    parent_id = int(parts[2], 16)
            except ValueError:
                pass
        parent = NonRecordingSpan(SpanContext(trace_id, parent_id, is_remote=True,
                                              trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        span = self.tracer.start_span(
            name, context=trace.set_span_in_context(parent), kind=SpanKind.INTERNAL,
            start_time=_ns(start_ms),
            attributes={k: v for k, v in attributes.items() if v is not None})
        span.end(end_time=_ns(max(end_ms, start_ms)))

    # -- the run -------------------------------------------------------------------------
    def run_ended(self, fields: dict[bytes, bytes]) -> None:
        """Export the run's root span (start to end, its status, spend and error)."""
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, Status, StatusCode

        run_id = fields[b"run_id"].decode()
        fn_id = (fields.get(b"function_id") or b"").decode()
        status = (fields.get(b"status") or b"").decode()
        started = int(fields.get(b"started_at") or 0)
        ended = int(fields.get(b"ended_at") or started)
        attributes: dict[str, Any] = {
            "inngest.run_id": run_id, "inngest.function": fn_id, "inngest.status": status}
        if b"cost_usd" in fields:
            attributes["inngest.cost_usd"] = float(fields[b"cost_usd"])
            attributes["gen_ai.usage.input_tokens"] = int(fields.get(b"input_tokens") or 0)
            attributes["gen_ai.usage.output_tokens"] = int(fields.get(b"output_tokens") or 0)
        token = _PRESET.set(stored_ids(run_id, fields.get(b"trace")))
        try:
            span = self.tracer.start_span(f"run {fn_id}", context=Context(),
                                          kind=SpanKind.INTERNAL, start_time=_ns(started),
                                          attributes=attributes)
        finally:
            _PRESET.reset(token)
        if status == "Failed":
            span.set_status(Status(StatusCode.ERROR, _error_text(fields.get(b"output"))))
        span.end(end_time=_ns(ended))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _error_text(output: bytes | None) -> str:
    import orjson

    try:
        value = orjson.loads(output) if output else None
    except orjson.JSONDecodeError:
        return ""
    if isinstance(value, dict):
        return f"{value.get('name') or 'Error'}: {value.get('message') or ''}"
    return ""
