"""Issue 13: what /metrics counts, in the engine (parsed with prometheus-client's parser)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from executor.driver import Completed, Outcome
from executor.metrics import NoMetrics

from .harness import Call, Engine, ops

A = "a" * 40


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_runs_steps_retries_usage_and_the_queue(engine: Engine,
                                                                    redis: Redis) -> None:
    await engine.sync({"id": "f"}, {"id": "idle", "stallThreshold": "1m",
                                    "triggers": [{"event": "test/idle"}]})

    def answer(call: Call) -> Outcome:
        if A in call.steps:
            return Completed("done")
        report = {"calls": 1, "models": {"gpt-x": {"input_tokens": 100, "output_tokens": 40,
                                                   "cost_usd": 0.02}}}
        if call.attempt == 0:
            return ops({"op": "StepError", "id": A, "displayName": "llm", "usage": report,
                        "error": {"name": "Error", "message": "429"}})
        return ops({"op": "StepRun", "id": A, "displayName": "llm", "data": 1,
                    "usage": report})

    engine.answer(answer)
    await engine.send()
    for _ in range(3):
        await engine.run_until_idle()
        engine.clock.advance(5_000)
    await engine.send(name="test/idle")  # never picked up: ready, then overdue and stalled
    engine.clock.advance(90_000)
    await engine.executor.operations.stalls.sweep()

    got = samples(await engine.executor.operations.metrics.render(redis, engine.clock()))
    fn = (("function", "f"),)
    assert got[("inngest_like_runs_started_total", fn)] == 1
    assert got[("inngest_like_runs_ended_total", (("function", "f"), ("status", "Completed")))] == 1
    assert got[("inngest_like_step_retries_total", fn)] == 1
    assert got[("inngest_like_step_duration_seconds_count",
                (("function", "f"), ("status", "Retrying")))] == 1
    assert got[("inngest_like_step_duration_seconds_count",
                (("function", "f"), ("status", "Completed")))] == 2
    model = (("function", "f"), ("kind", "input"), ("model", "gpt-x"))
    assert got[("inngest_like_tokens_total", model)] == 200  # both attempts billed
    assert got[("inngest_like_cost_usd_total", (("function", "f"), ("model", "gpt-x")))] == \
        0.04
    assert got[("inngest_like_queue_depth", (("state", "ready"),))] == 1
    assert got[("inngest_like_queue_oldest_ready_age_seconds", ())] == 90
    assert got[("inngest_like_runs_stalled", ())] == 1
    assert got[("inngest_like_stalls_total", (("function", "idle"),))] == 1


async def test_expired_leases_are_counted(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f"})
    await engine.send()
    queue = engine.executor.queue
    items, _, _ = await queue.lease(engine.clock(), 1_000, 10)  # a worker that then dies
    assert len(items) == 1
    engine.clock.advance(5_000)
    moved = await queue.reap(engine.clock())
    engine.executor.operations.metrics.leases_expired(moved)
    got = samples(await engine.executor.operations.metrics.render(redis, engine.clock()))
    assert got[("inngest_like_lease_expiries_total", ())] == 1


def test_tracing_off_imports_no_tracer() -> None:
    """Off, tracing costs nothing: the executor never even imports the OTel trace SDK or an
    exporter (redis-py itself may import parts of opentelemetry: not ours to count)."""
    code = ("import sys, executor.service, executor.api; print(any(m.startswith(("
            "'opentelemetry.sdk.trace', 'opentelemetry.exporter')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": ""}, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"


async def test_metrics_off(redis: Redis) -> None:
    """`--no-metrics`: nothing is counted (no registry is even built) and /metrics is 404."""
    engine = Engine(redis, metrics=False)
    await engine.sync({"id": "f"})
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    metrics = engine.executor.operations.metrics
    assert isinstance(metrics, NoMetrics) and not hasattr(metrics, "registry")
    with pytest.raises(LookupError):
        await metrics.render(redis, engine.clock())
