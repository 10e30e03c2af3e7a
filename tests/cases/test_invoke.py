"""`step.invoke`: the caller gets the invoked function's result; a failure of the invoked
function is a StepError the caller can catch; an invoke timeout is a StepError named
InngestInvokeTimeoutError. Real processes, one stack for the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import REDIS_KINDS, Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module", params=REDIS_KINDS)
def prim(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "invoke", "tests.apps.primitives_app:app",
                   "primitives-invoker", "primitives-add", "primitives-ledger",
                                   "primitives-slowpoke", redis_kind=request.param) as stack:
        yield stack


def invoke_step(stack: Stack, run_id: str) -> dict[str, Any]:
    steps = stack.executor.steps(run_id)
    assert len(steps) == 1, steps
    assert steps[0]["op"] == "InvokeFunction"
    return steps[0]


def events_named(stack: Stack, name: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.executor.url}/v1/events",
                       params={"name": name, "limit": 100}, timeout=10)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def target_run(stack: Stack, fn_id: str, caller_run_id: str) -> dict[str, Any]:
    """The run of `fn_id` started by the caller's invoke (its event names the caller)."""
    ex = stack.executor
    for event in events_named(stack, "inngest/function.invoked"):
        if event["data"]["_inngest"]["source_run_id"] == caller_run_id:
            runs = ex.runs_of(event["id"])
            assert [r["function_id"] for r in runs] == [fn_id]
            return runs[0]
    raise AssertionError(f"no inngest/function.invoked event from run {caller_run_id}")


def test_invoke_returns_the_result(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/invoke", {"mode": "ok"}), "Completed", timeout=15)
    assert run["output"] == {"result": {"sum": 42}}
    step = invoke_step(prim, run["run_id"])
    assert step["status"] == "Completed"
    assert step["output"] == {"sum": 42}
    target = target_run(prim, "primitives-add", run["run_id"])
    assert target["status"] == "Completed"
    assert target["output"] == {"sum": 42}


def test_invoked_function_failure_is_a_catchable_step_error(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/invoke", {"mode": "fail"}), ("Completed", "Failed"),
                      timeout=15)
    # the caller caught the StepError and returned it; it did not fail
    assert run["status"] == "Completed"
    assert run["output"] == {"caught": {"name": "ValueError",
                                        "message": "the ledger refused 125 EUR"}}
    step = invoke_step(prim, run["run_id"])
    assert step["status"] == "Failed"
    assert step["error"]["message"] == "the ledger refused 125 EUR"
    target = target_run(prim, "primitives-ledger", run["run_id"])
    assert target["status"] == "Failed"
    assert prim.counts()[(target["run_id"], "refuse")] == 1  # retries=0


def test_invoke_timeout_raises_invoke_timeout_error(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/invoke", {"mode": "timeout"}), ("Completed", "Failed"),
                      timeout=15)
    assert run["status"] == "Completed"
    caught = run["output"]["caught"]
    assert caught["name"] == "InngestInvokeTimeoutError"
    assert "timed out" in caught["message"].lower()
    step = invoke_step(prim, run["run_id"])
    assert step["status"] == "Failed"
    assert step["timed_out"] is True
    # the target (sleeping 6 s) was still running when the caller gave up after 1 s
    target = target_run(prim, "primitives-slowpoke", run["run_id"])
    assert target["status"] == "Running"
