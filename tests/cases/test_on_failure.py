"""`on_failure`: when a run fails for good (after its retries), the handler runs exactly
once, with the error and the run's original triggering event. Real processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "on-failure", "tests.apps.primitives_app:app",
                   "primitives-doomed", "primitives-doomed-failure") as stack:
        yield stack


def failed_events_of(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{stack.executor.url}/v1/events",
                       params={"name": "inngest/function.failed", "limit": 100}, timeout=10)
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["data"] if e["data"]["run_id"] == run_id]


def test_on_failure_runs_once_with_error_and_original_event(prim: Stack) -> None:
    ex = prim.executor
    event_id = ex.send("prim/doomed", {"reactor": "r-7"})
    run = ex.wait_run(event_id, "Failed", timeout=15)
    run_id = run["run_id"]
    assert run["output"]["message"] == "reactor r-7 melted"
    assert prim.counts()[(run_id, "explode")] == 2  # retries=1: two attempts

    handler = ex.wait_run(f"{run_id}-failed", "Completed", timeout=15,
                          fn_suffix="-doomed-failure")
    assert handler["function_id"] == "primitives-doomed-failure"
    out = handler["output"]
    assert out["failed_run"] == run_id
    assert out["function_id"] == "primitives-doomed"
    assert out["message"] == "reactor r-7 melted"
    assert out["original"]["name"] == "prim/doomed"
    assert out["original"]["data"] == {"reactor": "r-7"}

    # exactly once: one failed event, one handler run, one call of the handler body, and
    # it stays so (an end-event sweep or a second emitter would add one)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert len(failed_events_of(prim, run_id)) == 1
        assert len(ex.runs_of(f"{run_id}-failed")) == 1
        assert prim.counts()[(run_id, "on-failure")] == 1
        time.sleep(0.1)
