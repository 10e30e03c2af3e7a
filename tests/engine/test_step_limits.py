"""Issue 13: step timeouts and heartbeats, in the engine. A call that runs longer than its
step's timeout (or the function's `stepTimeout`), or whose step body stops beating for its
heartbeat timeout, is ended: a failed attempt with a clear error, retried with backoff."""

from __future__ import annotations

import asyncio
from typing import Any

from executor.driver import Completed, Outcome
from executor.read_model import ReadModel

from .harness import Call, Engine, ops

STEP = "b" * 40
HANG_S = 30.0  # longer than any test: only the executor ending the call stops it


def planned(opts: dict[str, str]) -> dict[str, Any]:
    return {"op": "StepPlanned", "id": STEP, "displayName": "slow", "opts": opts}


def done(data: Any = "ok") -> dict[str, Any]:
    return {"op": "StepRun", "id": STEP, "displayName": "slow", "data": data}


async def test_the_functions_step_timeout_ends_a_call_and_retries(engine: Engine) -> None:
    await engine.sync({"id": "f", "stepTimeout": "50ms"})

    async def answer(call: Call) -> Outcome:
        if call.attempt == 0:
            await asyncio.sleep(HANG_S)  # a provider that never answers
        return Completed("second attempt")

    engine.answer(answer)
    (run_id,) = await engine.send()
    await asyncio.wait_for(engine.run_until_idle(), 10)
    run = await engine.run(run_id)
    assert run["status"] == "Running"  # the retry waits for its backoff (1 s here)
    assert "did not finish within 0.05s (step timeout)" in run["last_error"]
    assert [c.attempt for c in engine.driver.calls] == [0]
    engine.clock.advance(1_000)
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "second attempt"
    assert [c.attempt for c in engine.driver.calls] == [0, 1]


async def test_a_steps_own_timeout_travels_with_its_planned_call(engine: Engine) -> None:
    await engine.sync({"id": "f"})

    async def answer(call: Call) -> Outcome:
        if call.step_id == "step":
            return Completed("done") if call.steps else ops(planned({"timeout": "50ms"}))
        if call.attempt == 0:
            await asyncio.sleep(HANG_S)
        return ops(done())

    engine.answer(answer)
    (run_id,) = await engine.send()
    await asyncio.wait_for(engine.run_until_idle(), 10)
    (step,) = await ReadModel(engine.redis).steps(run_id) or []
    assert step["name"] == "slow" and step["status"] == "Retrying"
    assert step["error"]["name"] == "StepTimeoutError"
    assert step["error"]["message"] == ("step 'slow' did not finish within 0.05s (step "
                                        "timeout): the call was ended")
    engine.clock.advance(1_000)
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert [(c.step_id, c.attempt) for c in engine.driver.calls] == [
        ("step", 0), (STEP, 0), (STEP, 1), ("step", 0)]


async def test_a_step_that_stops_beating_is_ended_and_retried(engine: Engine) -> None:
    """Heartbeat timeout 200 ms: the first attempt beats for a while, then goes silent
    (ended); the second beats every 100 ms for a whole second (kept alive) and finishes."""
    await engine.sync({"id": "f"})
    beats = engine.executor.operations.heartbeats

    async def beat_for(call: Call, times: int) -> None:
        for _ in range(times):
            assert await beats.beat(call.call_id, engine.clock())
            engine.clock.advance(100)
            await asyncio.sleep(0.06)  # the watch checks every 50 ms (real time)

    async def answer(call: Call) -> Outcome:
        if call.step_id == "step":
            return Completed("done") if call.steps else ops(
                planned({"heartbeatTimeout": "200ms"}))
        if call.attempt == 0:
            await beat_for(call, 3)
            engine.clock.advance(300)  # silent past the heartbeat timeout
            await asyncio.sleep(HANG_S)
        await beat_for(call, 10)
        return ops(done("alive throughout"))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await asyncio.wait_for(engine.run_until_idle(), 10)
    (step,) = await ReadModel(engine.redis).steps(run_id) or []
    assert step["status"] == "Retrying" and step["error"]["name"] == "HeartbeatTimeoutError"
    assert "sent no heartbeat for over 0.2s" in step["error"]["message"]
    first = engine.driver.calls[1]
    assert not await beats.beat(first.call_id, engine.clock())  # that call is over
    engine.clock.advance(1_000)
    await asyncio.wait_for(engine.run_until_idle(), 10)
    run = await engine.run(run_id)
    assert run["status"] == "Completed"
    (step,) = await ReadModel(engine.redis).steps(run_id) or []
    assert step["output"] == "alive throughout" and step["attempts"] == 2


async def test_calls_without_limits_carry_only_a_call_id(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed(None))
    await engine.send()
    await engine.run_until_idle()
    (call,) = engine.driver.calls
    assert call.call_id.startswith(f"{call.run_id}:1.")
    assert "traceparent" not in call.headers  # tracing is off
