"""Issue 13: traces, in the engine. One trace per run (its id is the run's), a span per call
(one step attempt) under the run's root span, the same trace across retries and across
executor processes; calls carry the span in `traceparent`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from ulid import ULID

from executor import keys, tracing
from executor.driver import Completed, Outcome
from executor.read_model import ReadModel
from executor.tracing import Tracing

from .harness import Call, Engine, ops

A, B = "a" * 40, "b" * 40


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    yield found
    found.shutdown()


def traced(redis: Redis, exporter: InMemorySpanExporter) -> Engine:
    return Engine(redis, tracing=Tracing(SimpleSpanProcessor(exporter)))


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_one_trace_per_run_a_span_per_attempt(redis: Redis,
                                                    exporter: InMemorySpanExporter) -> None:
    engine = traced(redis, exporter)
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        if A not in call.steps:
            if call.attempt == 0:
                return ops({"op": "StepError", "id": A, "displayName": "search",
                            "error": {"name": "Error", "message": "flaky"}})
            return ops({"op": "StepRun", "id": A, "displayName": "search", "data": 1,
                        "usage": {"calls": 1, "models": {"m": {
                            "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01}}}})
        return Completed("done")

    engine.answer(answer)
    (run_id,) = await engine.send()
    for _ in range(3):
        await engine.run_until_idle()
        engine.clock.advance(5_000)
    assert (await engine.run(run_id))["status"] == "Completed"

    trace_id, root_id = tracing.run_ids(run_id)
    assert trace_id == int.from_bytes(ULID.from_str(run_id).bytes, "big")
    spans = exporter.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {trace_id}
    (root,) = [s for s in spans if s.parent is None]
    assert root.name == "run f" and root.context.span_id == root_id
    assert attrs(root)["inngest.status"] == "Completed"
    assert attrs(root)["inngest.cost_usd"] == pytest.approx(0.01)
    calls = sorted((s for s in spans if s.parent is not None), key=lambda s: s.start_time or 0)
    assert [s.parent.span_id for s in calls if s.parent] == [root_id] * 3
    assert [(s.name, attrs(s)["inngest.attempt"], attrs(s)["inngest.status"])
            for s in calls] == [("step search", 1, "Retrying"),
                                ("step search", 2, "Completed"), ("finish", 1, "Completed")]
    assert attrs(calls[0])["inngest.error"] == "flaky"
    assert attrs(calls[1])["gen_ai.usage.input_tokens"] == 10
    assert attrs(calls[1])["inngest.cost_usd"] == pytest.approx(0.01)
    assert attrs(calls[1])["inngest.function"] == "f"
    # each call carried its own span as the parent for the app's spans
    sent = [c.headers["traceparent"] for c in engine.driver.calls]
    assert sent == [f"00-{trace_id:032x}-{s.context.span_id:016x}-01" for s in calls]
    # the run hash keeps the span context; the run API shows the trace id
    assert await redis.hget(keys.run(run_id), "trace") == tracing.trace_field(run_id).encode()
    view = await ReadModel(redis).run(run_id)
    assert view is not None and view["trace_id"] == f"{trace_id:032x}"


async def test_the_same_trace_across_executors(redis: Redis,
                                               exporter: InMemorySpanExporter) -> None:
    """The first executor's call sleeps the run; another process (its own clock, its own
    tracer) makes the next call: same trace, same parent."""
    first, second = traced(redis, exporter), traced(redis, exporter)
    await first.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        if not call.steps:
            return ops({"op": "Sleep", "id": B, "name": "1m", "opts": {"duration": "1m"}})
        return Completed("woke up elsewhere")

    first.answer(answer)
    second.answer(answer)
    (run_id,) = await first.send()
    await first.run_until_idle()
    second.clock.now = first.clock.now + 120_000
    await second.run_until_idle()
    assert (await second.run(run_id))["status"] == "Completed"
    trace_id, root_id = tracing.run_ids(run_id)
    spans = exporter.get_finished_spans()
    assert len(spans) == 3 and {s.context.trace_id for s in spans} == {trace_id}
    assert sorted(s.name for s in spans if s.parent and s.parent.span_id == root_id) == [
        "finish", "sleep 1m"]
    await first.executor.driver.close()
    await second.executor.driver.close()


def test_tracing_follows_the_standard_variables() -> None:
    assert not tracing.enabled({})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"})
    assert tracing.enabled({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.enabled({"OTEL_TRACES_EXPORTER": "none",
                                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert not tracing.enabled({"OTEL_SDK_DISABLED": "true",
                                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
