"""Retries, errors and the SDK's function shapes, end to end against tests/apps/durable_app.py.
Real processes, one stack for the file (the executor runs with --retry-interval 0.2)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ..conftest import Stack
from ..procs import wait_for

pytestmark = pytest.mark.real

ALL = ("flaky", "always-fails", "non-retriable", "compensate", "fn-error", "retry-after",
       "models", "sync-fn", "ctx-only", "fan-out", "fan-in-a", "fan-in-b")


@pytest.fixture(scope="module")
def ready(shared_stack: Stack) -> Stack:
    shared_stack.executor.wait_synced(*(f"durable-{fn}" for fn in ALL))
    return shared_stack


def steps_by_name(stack: Stack, run_id: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in stack.executor.steps(run_id)}


def test_flaky_step_succeeds_after_two_failures(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/flaky", {"fail_times": 2}), timeout=20)
    assert run["function_id"] == "durable-flaky"
    assert run["output"] == "ok after 2 failures"
    step = steps_by_name(ready, run["run_id"])["flaky"]
    assert step["status"] == "Completed"
    assert step["attempts"] == 3
    assert step["output"] == "ok after 2 failures"
    assert ready.counts()[(run["run_id"], "flaky")] == 3


def test_always_fails_ends_failed_after_three_attempts(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/always-fails"), "Failed", timeout=20)
    assert run["function_id"] == "durable-always-fails"
    assert "the provider is down" in str(run["output"])
    assert run["output"]["message"] == "the provider is down"
    step = steps_by_name(ready, run["run_id"])["broken"]
    assert step["status"] == "Failed"
    assert step["attempts"] == 3
    assert step["error"]["name"] == "ValueError"
    assert step["error"]["message"] == "the provider is down"
    assert ready.counts()[(run["run_id"], "broken")] == 3


def test_non_retriable_error_fails_after_one_attempt(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/non-retriable"), "Failed", timeout=20)
    assert "card declined" in str(run["output"])
    step = steps_by_name(ready, run["run_id"])["refuse"]
    assert step["status"] == "Failed"
    assert step["attempts"] == 1
    assert step["error"]["message"] == "card declined"
    # retries=5, yet the body ran once and is not run again later
    assert ready.counts()[(run["run_id"], "refuse")] == 1


def test_compensation_catches_the_step_error(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/compensate"), timeout=20)
    assert run["output"] == {"compensated": "refunded", "error": "gateway timeout",
                             "name": "RuntimeError"}
    counts = ready.counts()
    assert counts[(run["run_id"], "charge")] == 2  # retries=1
    assert counts[(run["run_id"], "refund")] == 1
    steps = steps_by_name(ready, run["run_id"])
    assert steps["charge"]["status"] == "Failed"
    assert steps["refund"]["status"] == "Completed"
    assert steps["refund"]["output"] == "refunded"


def test_error_outside_any_step_fails_after_two_attempts(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/fn-error"), "Failed", timeout=20)
    assert run["output"]["name"] == "KeyError"
    assert "missing field" in run["output"]["message"]
    counts = ready.counts()
    assert counts[(run["run_id"], "body-0")] == 1
    assert counts[(run["run_id"], "body-1")] == 1
    assert not any(rid == run["run_id"] and what == "body-2" for rid, what in counts)


def retry_after_gap(stack: Stack, run_id: str) -> tuple[float, float]:
    """(seconds between the two attempts of retry-after, sub-second part of the first)."""
    marks = {what: at for rid, what, at in stack.lines() if rid == run_id}
    assert set(marks) == {"limited-0", "limited-1"}
    return marks["limited-1"] - marks["limited-0"], marks["limited-0"] % 1


def test_retry_after_delays_the_second_attempt(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/retry-after"), timeout=20)
    assert run["output"] == "served"
    gap, _ = retry_after_gap(ready, run["run_id"])
    # RetryAfterError("...", 2000) asks for 2 s; without Retry-After the flat 0.2 s interval
    # would apply.
    assert gap >= 2.0 - 0.2, f"second attempt only {gap:.3f}s after the first"
    assert gap < 6, gap
    step = steps_by_name(ready, run["run_id"])["limited"]
    assert step["attempts"] == 2
    assert step["status"] == "Completed"


def test_retry_after_is_honoured_to_the_millisecond(ready: Stack) -> None:
    ex = ready.executor
    for _ in range(3):
        # start the first attempt early in a second, where truncating the header to whole
        # seconds visibly shortens the wait (a correct header gives >= 2 s wherever it lands)
        wait_for(lambda: 0.3 <= time.time() % 1 <= 0.45, 2, "the start of a second", 0.005)
        run = ex.wait_run(ex.send("test/retry-after"), timeout=20)
        gap, fraction = retry_after_gap(ready, run["run_id"])
        # a correct header gives >= 2 s wherever the attempt lands; where it landed in the
        # window, a header truncated to whole seconds would have shown as a shorter gap
        assert gap >= 2.0 - 0.2, f"second attempt only {gap:.3f}s after the first"
        if 0.35 <= fraction <= 0.8:
            break
    print(f"first attempt at .{fraction:.3f}s, gap {gap:.3f}s")


def test_pydantic_models_round_trip(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/models", {"topic": "otters"}), timeout=20)
    assert run["output"] == {"kind": "Summary", "tokens": 42}
    summarize = steps_by_name(ready, run["run_id"])["summarize"]
    assert summarize["output"] == {"text": "about otters", "tokens": 42}


def test_sync_function(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/sync"), timeout=20)
    assert run["function_id"] == "durable-sync-fn"
    assert run["output"] == 41
    steps = steps_by_name(ready, run["run_id"])
    assert steps["a"]["output"] == 20
    assert steps["b"]["output"] == 21


def test_ctx_only_function(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/ctx-only"), timeout=20)
    assert run["output"] == "ctx.step works"
    assert steps_by_name(ready, run["run_id"])["only"]["status"] == "Completed"


def test_fan_out_starts_both_subscribers_once_per_event(ready: Stack) -> None:
    ex = ready.executor
    run = ex.wait_run(ex.send("test/fan-out"), timeout=20)
    ids = run["output"]["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3

    outputs: dict[str, set[str]] = {"durable-fan-in-a": set(), "durable-fan-in-b": set()}
    for event_id in ids:
        runs = wait_for(lambda e=event_id: len(ex.runs_of(e)) == 2
                        and all(r["status"] == "Completed" for r in ex.runs_of(e))
                        and ex.runs_of(e), 20, f"both fan-in runs of {event_id}")
        assert sorted(r["function_id"] for r in runs) == sorted(outputs)
        for r in runs:
            outputs[r["function_id"]].add(r["output"])
    assert outputs["durable-fan-in-a"] == {"name", "list", "client"}
    assert outputs["durable-fan-in-b"] == {"b:name", "b:list", "b:client"}

    # the run was replayed after every step, yet each send happened exactly once
    answer = httpx.get(f"{ex.url}/v1/events", params={"name": "test/fanned", "limit": 100},
                       timeout=10)
    assert answer.status_code == 200, answer.text
    stored = answer.json()["data"]
    assert len(stored) == 3
    assert {e["id"] for e in stored} == set(ids)
    assert sorted(e["data"]["via"] for e in stored) == ["client", "list", "name"]
    steps = steps_by_name(ready, run["run_id"])
    assert {"test/fanned", "send-list", "client-send"} <= set(steps)
