"""Issue 13, the SDK side: usage() rides on the step's opcode (failed attempts too), a step
with a timeout is planned only for an executor that enforces it, heartbeats are no-ops where
they cannot reach one, and the function options render to the sync config."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import orjson
import pytest

import inngest_like as inngest
from inngest_like import _usage
from inngest_like._engine import Dispatch, hash_step_id
from inngest_like._errors import _Interrupt
from inngest_like._handler import Handler, Request
from inngest_like._step import Step


def _step(**kw: Any) -> Step:
    async def no_send(events: Any) -> list[str]:
        raise AssertionError("send not expected")

    return Step(Dispatch(memos={}, **kw), no_send)


def _ops(coro: Any) -> list[dict[str, Any]]:
    with pytest.raises(_Interrupt) as caught:
        asyncio.run(coro)
    return caught.value.ops


def llm(cost: float) -> str:
    inngest.usage(model="gpt-x", input_tokens=100, output_tokens=20, cost_usd=cost)
    inngest.usage(model="gpt-x", input_tokens=50, output_tokens=0, cost_usd=cost)
    inngest.usage(model="small", input_tokens=1, output_tokens=1, cost_usd=0)
    return "answer"


def test_usage_calls_add_up_on_the_step_run() -> None:
    (op,) = _ops(_step().run("think", llm, 0.01))
    assert op["op"] == "StepRun" and op["data"] == "answer"
    assert op["usage"] == {"calls": 3, "models": {
        "gpt-x": {"input_tokens": 150, "output_tokens": 20, "cost_usd": 0.02},
        "small": {"input_tokens": 1, "output_tokens": 1, "cost_usd": 0}}}


def test_a_failed_attempt_reports_its_usage_too() -> None:
    def rate_limited() -> None:
        inngest.usage(model="gpt-x", input_tokens=900, cost_usd=0.003)
        raise RuntimeError("429 Too Many Requests")

    (op,) = _ops(_step(max_attempts=3).run("think", rate_limited))
    assert op["op"] == "StepError"
    assert op["usage"]["models"]["gpt-x"]["input_tokens"] == 900
    (last,) = _ops(_step(attempt=2, max_attempts=3).run("think", rate_limited))
    assert last["op"] == "StepFailed" and last["usage"]["calls"] == 1


def test_a_step_without_usage_has_no_usage_field() -> None:
    (op,) = _ops(_step().run("plain", lambda: 1))
    assert "usage" not in op


def test_usage_outside_a_step_is_ignored_with_a_warning(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_usage, "_warned", False)
    with caplog.at_level(logging.WARNING, "inngest_like"):
        inngest.usage(model="m", input_tokens=1)
        inngest.usage(model="m", input_tokens=1)
    assert caplog.text.count("outside a step body") == 1
    with pytest.raises(ValueError, match="input_tokens"):
        inngest.usage(model="m", input_tokens=-1)
    with pytest.raises(ValueError, match="cost_usd"):
        inngest.usage(model="m", cost_usd=float("nan"))


def test_a_step_with_a_timeout_is_planned_for_an_enforcing_executor() -> None:
    (op,) = _ops(_step(enforces_limits=True).run(
        "slow", lambda: "x", timeout=datetime.timedelta(seconds=30), heartbeat_timeout=1.5))
    assert op["op"] == "StepPlanned" and op["id"] == hash_step_id("slow", 0)
    assert op["opts"] == {"timeout": "30s", "heartbeatTimeout": "1500ms"}
    # targeted, it runs
    (ran,) = _ops(_step(enforces_limits=True, target_step=op["id"]).run(
        "slow", lambda: "x", timeout=30))
    assert ran["op"] == "StepRun"
    # an executor that does not enforce limits (Inngest's): it runs at once, as before
    (plain,) = _ops(_step().run("slow", lambda: "x", timeout=30))
    assert plain["op"] == "StepRun" and "opts" not in plain
    with pytest.raises(ValueError, match="timeout must be a positive duration"):
        asyncio.run(_step(enforces_limits=True).run("bad", lambda: 1, timeout=0))


def test_parallel_steps_keep_their_limits() -> None:
    step = _step(enforces_limits=True)

    async def flow() -> Any:
        return await asyncio.gather(step.run("a", lambda: 1, timeout=5),
                                    step.run("b", lambda: 2))

    a, b = _ops(flow())
    assert a["op"] == b["op"] == "StepPlanned"
    assert a["opts"] == {"timeout": "5s"} and "opts" not in b


def test_heartbeat_is_a_no_op_without_an_executor_that_takes_them() -> None:
    async def body() -> bool:
        return await inngest.heartbeat()

    assert asyncio.run(body()) is True  # outside a step
    (op,) = _ops(_step().run("beating", body))  # in a step, no call id (Inngest's executor)
    assert op["data"] is True
    assert inngest.heartbeat_sync() is True


def test_function_options_render_to_the_sync_config() -> None:
    client = inngest.Inngest(app_id="app", is_production=False)

    @client.create_function(fn_id="agent", trigger=inngest.TriggerEvent(event="a/go"),
                            budget=inngest.Budget(usd=2.0, tokens=100_000),
                            step_timeout=90, stall_threshold=datetime.timedelta(minutes=10))
    async def agent(ctx: inngest.Context, step: inngest.Step) -> None:
        pass

    config = agent.to_config("http://app/api/inngest")
    assert config["budget"] == {"usd": 2.0, "tokens": 100_000}
    assert config["stepTimeout"] == "90s" and config["stallThreshold"] == "600s"
    with pytest.raises(inngest.ConfigError, match="usd=, tokens="):
        inngest.Budget()
    with pytest.raises(inngest.ConfigError, match="usd must be a positive"):
        inngest.Budget(usd=-1)


def test_the_handler_passes_the_call_id_and_continues_the_trace() -> None:
    """With the executor's headers, a step body sees its call (heartbeats reach the
    executor) and the executor's span as the current OpenTelemetry context."""
    from opentelemetry import trace

    client = inngest.Inngest(app_id="app", is_production=False)
    seen: dict[str, Any] = {}

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="a/go"))
    async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
        def body() -> str:
            from inngest_like._scope import current_step

            scope = current_step()
            assert scope is not None and scope.call is not None
            seen["call"] = scope.call.call_id
            seen["span"] = trace.get_current_span().get_span_context()
            return "ok"

        return await step.run("s", body)

    handler = Handler(client, [f])
    trace_id, span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    body = orjson.dumps({"event": {"name": "a/go", "data": {}, "id": "e1", "ts": 1},
                         "events": [], "steps": {}, "use_api": False,
                         "ctx": {"run_id": "r1", "attempt": 0, "stack": {"stack": []},
                                 "disable_immediate_execution": False}})
    answer = asyncio.run(handler.call(Request(
        "POST", "http://app/api/inngest?fnId=app-f&stepId=step", {"fnId": "app-f"},
        {"x-inngest-like-call": "r1:1.abcd", "traceparent": f"00-{trace_id}-{span_id}-01"},
        body)))
    assert answer.status == 206
    assert seen["call"] == "r1:1.abcd"
    assert f"{seen['span'].trace_id:032x}" == trace_id
    assert f"{seen['span'].span_id:016x}" == span_id
