"""The sans-IO engine: step-id hashing, memo replay, opcode construction."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pydantic
import pytest

import inngest_like as inngest
from inngest_like._engine import Dispatch, hash_step_id
from inngest_like._errors import _Interrupt
from inngest_like._step import Step


def test_step_id_hash_is_sha1_with_index_suffix() -> None:
    assert hash_step_id("my-step-id", 0) == "e7d8a2f140845095749d60246ff1110c9d01d76a"
    assert hash_step_id("my-step-id", 1) == "f47c6228c581af870aa285200cf95ec3ac59bb6a"


def test_repeated_ids_get_increasing_indexes() -> None:
    d = Dispatch(memos={})
    a, b, c = d.begin("x"), d.begin("x"), d.begin("y")
    assert (a.index, b.index, c.index) == (0, 1, 0)
    assert b.hashed == hash_step_id("x", 1)


def _step(memos: dict[str, Any], **kw: Any) -> Step:
    async def no_send(events: Any) -> list[str]:
        raise AssertionError("send not expected")

    return Step(Dispatch(memos=memos, **kw), no_send)


def _interrupt(coro: Any) -> _Interrupt:
    with pytest.raises(_Interrupt) as caught:
        asyncio.run(coro)
    return caught.value


def test_new_step_runs_and_reports_step_run() -> None:
    calls = []
    step = _step({})
    op = _interrupt(step.run("fetch", lambda: calls.append(1) or {"a": 1})).ops[0]
    assert calls == [1]
    assert op["op"] == "StepRun"
    assert op["id"] == hash_step_id("fetch", 0)
    assert op["data"] == {"a": 1}
    assert op["displayName"] == "fetch"
    assert op["userland"] == {"id": "fetch", "index": 0}


def test_memoized_step_replays_without_running() -> None:
    step = _step({hash_step_id("fetch", 0): {"data": [1, 2]}})
    ran = []

    async def flow() -> Any:
        return await step.run("fetch", lambda: ran.append(1))

    assert asyncio.run(flow()) == [1, 2]
    assert ran == []


def test_memoized_error_raises_step_error() -> None:
    memo = {"error": {"name": "ValueError", "message": "boom", "stack": "tb"}}
    step = _step({hash_step_id("charge", 0): memo})
    with pytest.raises(inngest.StepError) as caught:
        asyncio.run(step.run("charge", lambda: None))
    assert (caught.value.name, caught.value.message) == ("ValueError", "boom")


def test_failure_is_step_error_until_last_attempt() -> None:
    def boom() -> None:
        raise RuntimeError("down")

    early = _interrupt(_step({}, attempt=0, max_attempts=3).run("s", boom)).ops[0]
    last = _interrupt(_step({}, attempt=2, max_attempts=3).run("s", boom)).ops[0]
    assert early["op"] == "StepError"
    assert early["error"]["name"] == "RuntimeError"
    assert early["error"]["message"] == "down"
    assert last["op"] == "StepFailed"


def test_non_retriable_fails_at_once_and_retry_after_sets_header() -> None:
    def refuse() -> None:
        raise inngest.NonRetriableError("no")

    def later() -> None:
        raise inngest.RetryAfterError("429", datetime.timedelta(seconds=30))

    assert _interrupt(_step({}, max_attempts=5).run("s", refuse)).ops[0]["op"] == "StepFailed"
    interrupt = _interrupt(_step({}, max_attempts=5).run("s", later))
    assert interrupt.ops[0]["op"] == "StepError"
    assert interrupt.retry_after and interrupt.retry_after.endswith("Z")


def test_targeting_another_step_is_unexpected() -> None:
    step = _step({}, target_step=hash_step_id("other", 0))
    with pytest.raises(Exception, match="targeted"):
        asyncio.run(step.run("mine", lambda: 1))


def test_disable_immediate_execution_plans() -> None:
    op = _interrupt(_step({}, disable_immediate_execution=True).run("s", lambda: 1)).ops[0]
    assert op["op"] == "StepPlanned"


def test_parallel_plans_every_new_step() -> None:
    step = _step({hash_step_id("a", 0): {"data": 1}})
    interrupt = _interrupt(
        step.parallel([lambda: step.run("a", lambda: 1), lambda: step.run("b", lambda: 2),
                       lambda: step.run("c", lambda: 3)])
    )
    assert [(o["op"], o["displayName"]) for o in interrupt.ops] == [
        ("StepPlanned", "b"), ("StepPlanned", "c")]


def test_sleep_and_wait_report_their_opcodes() -> None:
    sleep = _interrupt(_step({}).sleep("nap", datetime.timedelta(minutes=90))).ops[0]
    assert sleep["op"] == "Sleep" and sleep["opts"]["duration"] == "5400s"
    wait = _interrupt(
        _step({}).wait_for_event("w", event="approval/decided", if_exp="async.data.ok",
                                 timeout=60)
    ).ops[0]
    assert wait["op"] == "WaitForEvent"
    assert wait["opts"] == {"event": "approval/decided", "timeout": "60s", "if": "async.data.ok"}
    assert asyncio.run(_step({hash_step_id("nap", 0): None}).sleep("nap", 5)) is None


def test_gather_of_a_run_a_wait_and_an_invoke_reports_them_together() -> None:
    step = _step({})
    ran: list[int] = []

    async def flow() -> Any:
        return await asyncio.gather(
            step.run("a", lambda: ran.append(1)),
            step.wait_for_event("w", event="approval/decided", timeout=60),
            step.invoke("i", function="app-add", data={"x": 1}),
        )

    ops = _interrupt(flow()).ops
    assert [(o["op"], o["displayName"]) for o in ops] == [
        ("StepPlanned", "a"), ("WaitForEvent", "w"), ("InvokeFunction", "i")]
    assert ops[1]["opts"]["event"] == "approval/decided" and ops[1]["name"] == "approval/decided"
    assert ops[2]["opts"]["function_id"] == "app-add"
    assert ran == []  # planned, not run in this call


def test_targeted_call_skips_the_waits_and_invokes_beside_its_step() -> None:
    for group in ("gather", "parallel"):
        step = _step({}, target_step=hash_step_id("a", 0))

        async def flow(step: Step = step, group: str = group) -> Any:
            if group == "gather":
                return await asyncio.gather(
                    step.wait_for_event("w", event="e", timeout=60),
                    step.run("a", lambda: "A"),
                    step.invoke("i", function="app-add"))
            return await step.parallel([
                lambda: step.wait_for_event("w", event="e", timeout=60),
                lambda: step.run("a", lambda: "A"),
                lambda: step.invoke("i", function="app-add")])

        ops = _interrupt(flow()).ops
        assert [(o["op"], o["displayName"], o.get("data")) for o in ops] == [
            ("StepRun", "a", "A")], group


def test_parallel_group_reports_waits_and_invokes_with_their_opcodes() -> None:
    step = _step({})
    interrupt = _interrupt(step.parallel([
        lambda: step.run("a", lambda: 1),
        lambda: step.wait_for_event("w", event="e", timeout=60),
        lambda: step.invoke("i", function="app-add")]))
    assert [o["op"] for o in interrupt.ops] == ["StepPlanned", "WaitForEvent", "InvokeFunction"]


class Summary(pydantic.BaseModel):
    text: str


async def summarize() -> Summary:
    return Summary(text="hi")


def test_pydantic_output_stored_as_json_and_rebuilt_on_replay() -> None:
    op = _interrupt(_step({}).run("sum", summarize)).ops[0]
    assert op["data"] == {"text": "hi"}
    replayed = asyncio.run(_step({hash_step_id("sum", 0): {"data": {"text": "hi"}}})
                           .run("sum", summarize))
    assert isinstance(replayed, Summary) and replayed.text == "hi"


def test_extra_args_are_passed_to_the_callable() -> None:
    op = _interrupt(_step({}).run("add", lambda a, b: a + b, 2, 3)).ops[0]
    assert op["data"] == 5


async def test_send_event_ids_derive_from_the_run_and_step() -> None:
    """A send executed again (its memo was lost in a crash) repeats its event ids, so the
    executor's idempotent ingest drops the duplicates; ids the user set are kept."""
    from inngest_like import Event
    from inngest_like._engine import Dispatch
    from inngest_like._errors import _Interrupt
    from inngest_like._step import Step

    sent: list[list[Event]] = []

    async def send(events: list[Event]) -> list[str]:
        sent.append(events)
        return [e.id for e in events]

    for _ in range(2):  # the same call twice: the first attempt's memo was never saved
        step = Step(Dispatch(memos={}, run_id="run-1"), send)
        try:
            await step.send_event("notify", [Event(name="a"), Event(name="b", id="mine")])
        except _Interrupt:
            pass
    first, again = ([e.id for e in batch] for batch in sent)
    assert first == again and first[1] == "mine"
    assert first[0].startswith("run-1-") and first[0] != first[1]
    other = Step(Dispatch(memos={}, run_id="run-2"), send)
    try:
        await other.send_event("notify", [Event(name="a")])
    except _Interrupt:
        pass
    assert sent[-1][0].id != first[0]  # another run sends other ids
