"""`[StepRun..., RunComplete]`: a function that returned after steps it ran in the same call
(JS v4 in checkpoint mode, and our SDK's last step) ends its run with those steps saved, in
one call and one script."""

from __future__ import annotations

from typing import Any

import orjson

from executor import keys
from executor.driver import Ops
from executor.step_record import StepRecord

from .harness import START_MS, Call, Engine, ops, step_run


def _complete(data: Any) -> dict[str, Any]:
    return {"op": "RunComplete", "id": "complete", "data": data}


async def _steps(engine: Engine, run_id: str) -> tuple[list[bytes], dict[bytes, Any],
                                                       dict[bytes, Any]]:
    redis = engine.redis
    stack = await redis.lrange(keys.run_stack(run_id), 0, -1)
    memos = {k: orjson.loads(v) for k, v in (await redis.hgetall(keys.run_memos(run_id))).items()}
    records = {k: orjson.loads(v)
               for k, v in (await redis.hgetall(keys.run_steps(run_id))).items()}
    return stack, memos, records


async def test_steps_before_run_complete_are_saved_with_the_end(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    (run_id,) = await engine.send()
    calls: list[Call] = []

    def answer(call: Call) -> Ops:
        calls.append(call)
        engine.clock.advance(30)
        late = step_run("b", {"n": 2}, "second")
        late["timing"] = {"a": (START_MS + 10) * 10**6, "b": 10 * 10**6}  # when it ran (ns)
        return ops(step_run("a", 1, "first"), late, _complete({"sum": 3}))

    engine.answer(answer)
    await engine.run_until_idle()
    assert len(calls) == 1  # nothing more to call: the run ended with that answer
    run = await engine.run(run_id)
    assert (run["status"], run["output"]) == ("Completed", {"sum": 3})
    stack, memos, records = await _steps(engine, run_id)
    assert stack == [b"a", b"b"]
    assert memos == {b"a": {"data": 1}, b"b": {"data": {"n": 2}}}
    assert {k: (r["name"], r["status"]) for k, r in records.items()} == {
        b"a": ("first", "Completed"), b"b": ("second", "Completed")}
    # a step with its timing is recorded when its body ran; one without, the call's span
    assert (records[b"b"]["started_at"], records[b"b"]["ended_at"]) == (START_MS + 10,
                                                                        START_MS + 20)
    assert (records[b"a"]["started_at"], records[b"a"]["ended_at"]) == (START_MS,
                                                                        START_MS + 30)


async def test_a_step_saved_already_keeps_its_first_value(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    (run_id,) = await engine.send()
    state = engine.executor.state

    async def answer(call: Call) -> Ops:
        # checkpointed during the call, then sent again with the end (a checkpoint whose
        # answer was lost): saved once, with its first value
        await state.checkpoint(run_id, engine.clock(), [
            ("a", b'{"data":"first"}', _record("a"))])
        return ops(step_run("a", "again"), _complete("done"))

    engine.answer(answer)
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert (run["status"], run["output"]) == ("Completed", "done")
    stack, memos, _ = await _steps(engine, run_id)
    assert stack == [b"a"] and memos == {b"a": {"data": "first"}}


async def test_other_ops_before_run_complete_fail_the_run_readably(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    (run_id,) = await engine.send()
    engine.answer(lambda call: ops({"op": "Sleep", "id": "s", "opts": {"duration": "1s"}},
                                   _complete(1)))
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Failed"
    assert "Sleep before RunComplete" in run["output"]["message"]


def _record(step_id: str) -> StepRecord:
    return StepRecord(step_id, step_id, "StepRun", "Completed", 1, START_MS, START_MS, {})


async def test_the_sdk_version_is_kept_for_later_calls_but_not_by_a_call_that_ends(
        engine: Engine) -> None:
    await engine.sync({"id": "f"})
    first, second = await engine.send(), await engine.send()
    answers = {first[0]: [Ops([step_run("a", 1)], None, False, 2),
                          Ops([_complete(1)], None, False, 2)],
               second[0]: [Ops([step_run("a", 1), _complete(1)], None, False, 2)]}
    engine.answer(lambda call: answers[call.run_id].pop(0))
    await engine.run_until_idle()
    # kept for the first run's later calls (they send it back to the SDK)
    assert await engine.redis.hget(keys.run(first[0]), "version") == b"2"
    # a run that ended in its first call: no write of a version nobody will echo
    assert await engine.redis.hget(keys.run(second[0]), "version") == b"-1"
    assert [(await engine.run(r))["status"] for r in (*first, *second)] == ["Completed"] * 2
