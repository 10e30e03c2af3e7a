"""Issue 13: cost meters and budgets, in the engine. Usage reported by a step body is summed
per attempt, step, run and function (failed attempts included, each report once); a budget
stops a run once its spend reaches it, before any further call and before any retry."""

from __future__ import annotations

from typing import Any

import httpx
from pytest import approx
from redis.asyncio import Redis

from executor import keys
from executor.api import create_app
from executor.driver import Completed, Outcome
from executor.read_model import ReadModel

from .harness import Call, Engine, ops

STEP = "a" * 40


def used(calls: int, cost: float, tokens: tuple[int, int] = (100, 20),
         model: str = "m-1") -> dict[str, Any]:
    return {"calls": calls, "models": {model: {"input_tokens": tokens[0],
                                               "output_tokens": tokens[1], "cost_usd": cost}}}


def step_error(hashed: str, report: dict[str, Any] | None) -> dict[str, Any]:
    op = {"op": "StepError", "id": hashed, "displayName": "llm",
          "error": {"name": "RateLimited", "message": "429"}}
    return {**op, "usage": report} if report else op


def step_run(hashed: str, data: Any, report: dict[str, Any] | None,
             name: str = "llm") -> dict[str, Any]:
    op = {"op": "StepRun", "id": hashed, "displayName": name, "data": data}
    return {**op, "usage": report} if report else op


async def drain(engine: Engine, rounds: int = 10) -> None:
    """Run until idle, moving the clock past each retry's backoff."""
    for _ in range(rounds):
        await engine.run_until_idle()
        engine.clock.advance(60_000)


async def test_usage_is_summed_per_attempt_step_run_and_function(engine: Engine) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        if call.steps:
            return Completed("done")
        if call.attempt < 2:  # two failed attempts, each billed
            return ops(step_error(STEP, used(1, 0.25)))
        return ops(step_run(STEP, "ok", used(2, 0.5, (300, 60))))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await drain(engine)
    run = await engine.run(run_id)
    assert run["status"] == "Completed"
    assert float(run["cost_usd"]) == 1.0
    assert (int(run["input_tokens"]), int(run["output_tokens"])) == (500, 100)

    read = ReadModel(engine.redis)
    view = await read.run(run_id)
    assert view is not None and view["usage"]["cost_usd"] == 1.0
    assert view["usage"]["models"]["m-1"]["input_tokens"] == 500
    (step,) = await read.steps(run_id) or []
    assert step["usage"]["cost_usd"] == 1.0
    assert [(a["attempt"], a["cost_usd"]) for a in step["usage"]["attempts"]] == [
        (1, 0.25), (2, 0.25), (3, 0.5)]
    detail = await read.run_detail(run_id, engine.clock())
    assert detail is not None and detail["steps"][0]["usage"]["cost_usd"] == 1.0

    fn = await engine.executor.operations.usage.function_usage("f", engine.clock())
    assert fn["cost_usd"] == 1.0 and fn["runs_with_usage"] == 1
    assert fn["per_day"][-1]["cost_usd"] == 1.0 and fn["per_day"][-1]["tokens"] == 600
    assert fn["cost_per_run"] == {"runs": 1, "p50": 1.0, "p95": 1.0, "max": 1.0}
    assert fn["models"]["m-1"]["cost_usd"] == 1.0


async def test_a_report_counts_once_however_often_it_arrives(engine: Engine) -> None:
    """A heartbeat carries the body's usage so far, the answer carries it again: the second
    report adds only what is new; a late, smaller report adds nothing."""
    await engine.sync({"id": "f"})
    usage = engine.executor.operations.usage

    async def answer(call: Call) -> Outcome:
        if call.steps:
            return Completed("done")
        record = (call.run_id, "f", call.call_id, STEP, "llm", 1)
        assert await usage.record(*record, used(1, 0.1), engine.clock()) is not None
        assert await usage.record(*record, used(1, 0.1), engine.clock()) is None  # again
        return ops(step_run(STEP, "ok", used(2, 0.3)))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert float((await engine.run(run_id))["cost_usd"]) == approx(0.3)
    (call,) = [c for c in engine.driver.calls if not c.steps]
    late = await usage.record(run_id, "f", call.call_id, STEP, "llm", 1, used(1, 0.1),
                              engine.clock())
    assert late is None and float((await engine.run(run_id))["cost_usd"]) == approx(0.3)


async def test_a_repeated_call_is_billed_again(engine: Engine, redis: Redis) -> None:
    """A call made again (its worker died before recording the answer) is a new provider
    call: its usage counts on top, not deduplicated against the first one's."""
    await engine.sync({"id": "f"})
    usage = engine.executor.operations.usage
    (run_id,) = await engine.send()
    for nonce in ("aaaa0001", "aaaa0002"):  # the same item, two executions
        await usage.record(run_id, "f", f"{run_id}:1.{nonce}", STEP, "llm", 1,
                           used(1, 0.2), engine.clock())
    assert float(await redis.hget(keys.run(run_id), "cost_usd") or 0) == approx(0.4)


async def test_a_budget_stops_a_looping_agent(engine: Engine) -> None:
    await engine.sync({"id": "agent", "budget": {"usd": 1.0}},
                      {"id": "agent-failure", "retries": 0,
                       "triggers": [{"event": "inngest/function.failed",
                                     "expression": "event.data.function_id == 'agent'"}]})

    def answer(call: Call) -> Outcome:
        if "agent-failure" in call.event.get("name", "") or call.event["name"].startswith(
                "inngest/"):
            return Completed({"alerted": call.event["data"]["error"]["message"]})
        n = len(call.steps)  # the agent never stops thinking: one $0.30 step after another
        return ops(step_run(f"{n:040d}", n, used(1, 0.3), name=f"think-{n}"))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await drain(engine)
    run = await engine.run(run_id)
    assert run["status"] == "Failed"
    error = run["output"]
    assert error["name"] == "BudgetExceededError"
    assert "$1.2000 of its $1.00 budget" in error["message"]
    assert error["spent"]["usd"] == 1.2 and error["budget"]["usd"] == 1.0
    agent_calls = [c for c in engine.driver.calls if c.run_id == run_id]
    assert len(agent_calls) == 4  # $0.90 after 3: a 4th ran; $1.20 after 4: no 5th call
    handlers = [c for c in engine.driver.calls if c.event["name"] == "inngest/function.failed"]
    assert len(handlers) == 1
    assert handlers[0].event["data"]["error"]["name"] == "BudgetExceededError"


async def test_a_spent_budget_stops_retries_at_once(engine: Engine) -> None:
    await engine.sync({"id": "f", "budget": {"usd": 1.0}})
    engine.answer(lambda call: ops(step_error(STEP, used(1, 0.6))))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Running"  # $0.60: retried later
    engine.clock.advance(60_000)
    await engine.run_until_idle()  # $1.20: no retry scheduled, failed now
    run = await engine.run(run_id)
    assert run["status"] == "Failed" and run["output"]["name"] == "BudgetExceededError"
    assert len(engine.driver.calls) == 2
    await drain(engine)
    assert len(engine.driver.calls) == 2
    steps = await ReadModel(engine.redis).steps(run_id) or []
    assert steps[0]["status"] == "Failed" and steps[0]["usage"]["cost_usd"] == 1.2


async def test_a_token_budget(engine: Engine) -> None:
    await engine.sync({"id": "f", "budget": {"tokens": 1000}})
    engine.answer(lambda call: ops(step_run(f"{len(call.steps):040d}", 1,
                                            used(1, 0.0, (400, 100)))))
    (run_id,) = await engine.send()
    await drain(engine)
    run = await engine.run(run_id)
    assert run["output"]["name"] == "BudgetExceededError"
    assert "1,000 tokens of its 1,000-token budget" in run["output"]["message"]
    assert len(engine.driver.calls) == 2


async def test_a_malformed_report_is_ignored_not_fatal(engine: Engine) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        if call.steps:
            return Completed("done")
        return ops(step_run(STEP, 1, {"calls": 1, "models": {"m": {"cost_usd": -5}}}))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and "cost_usd" not in run


async def test_checkpointed_steps_are_metered_and_stopped_by_the_budget(engine: Engine) -> None:
    """An SDK that checkpoints (protocol §8) runs step after step inside one call. Each
    checkpointed step's usage counts (two steps of one call, each its own report), and once
    the budget is spent the checkpoint is refused: the SDK answers the call, and the worker
    fails the run before any further call."""
    await engine.sync({"id": "agent", "budget": {"usd": 1.0}})
    api = create_app(engine.executor, manage_lifecycle=False)
    answered: list[int] = []

    async def answer(call: Call) -> Outcome:
        n = len(call.steps)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                     base_url="http://executor") as http:
            while True:  # the agent thinks on; each thought costs $0.30
                op = step_run(f"{n:040d}", n, used(1, 0.3), name=f"think-{n}")
                saved = await http.post(f"/v1/checkpoint/{call.run_id}/async", json={
                    "run_id": call.run_id, "qi_id": call.qi_id, "steps": [op],
                    "generation_id": call.headers["X-Inngest-Generation-Id"]})
                if saved.status_code != 200:  # refused: answer the call with the step
                    assert "BudgetExceededError" not in saved.text  # the message is plain
                    assert "of its $1.00 budget" in saved.json()["error"]
                    answered.append(n)
                    return ops(op)
                n += 1

    engine.answer(answer)
    (run_id,) = await engine.send()
    await drain(engine)
    run = await engine.run(run_id)
    assert run["status"] == "Failed" and run["output"]["name"] == "BudgetExceededError"
    assert float(run["cost_usd"]) == approx(1.2)  # 4 thoughts, each counted once
    assert answered == [3] and len(engine.driver.calls) == 1  # one call, no further one
    steps = await ReadModel(engine.redis).steps(run_id) or []
    assert sorted(s["name"] for s in steps) == [f"think-{i}" for i in range(4)]
    assert all(s["usage"]["cost_usd"] == approx(0.3) for s in steps)
