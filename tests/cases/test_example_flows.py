"""The example app's human-in-the-loop approval and booking saga, with real processes."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import REDIS_KINDS, Stack, start_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


@pytest.fixture(scope="module", params=REDIS_KINDS)
def example(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Stack]:
    directory: pathlib.Path = tmp_path_factory.mktemp(f"example-{request.param}")
    stack = start_stack(directory, "examples.fastapi_app.main:app", redis_kind=request.param)
    stack.executor.wait_synced("llm-pipeline-expense-approval", "llm-pipeline-trip-booking",
                               "llm-pipeline-trip-booking-failure")
    yield stack
    stack.stop()


def test_approval_waits_for_the_decision_link(example: Stack) -> None:
    ex = example.executor
    other = ex.send("expense/submitted", {"request_id": "exp-2"})
    mine = ex.send("expense/submitted", {"request_id": "exp-1"})
    run = ex.wait_run(mine, "Running")

    def waiting() -> bool:
        steps = {s["name"]: s for s in ex.steps(run["run_id"])}
        return steps.get("wait-for-decision", {}).get("status") == "Waiting"

    wait_for(waiting, 20, "the run to wait for approval/decided")
    # the link for exp-1 resumes exp-1 only: the if_exp compares request ids
    base = example.app.url.removesuffix("/api/inngest")
    answer = httpx.get(f"{base}/approve/exp-1", params={"approved": "true", "by": "ana"})
    assert answer.status_code == 200, answer.text
    done = ex.wait_run(mine, timeout=20)
    assert done["output"] == {"request_id": "exp-1", "status": "approved", "by": "ana"}
    assert ex.runs_of(other)[0]["status"] == "Running"


def test_booking_saga_compensates_in_reverse_order(example: Stack) -> None:
    ex = example.executor
    event_id = ex.send("trip/requested", {"trip_id": "t-42"})
    run = ex.wait_run(event_id, "Failed", timeout=30)
    assert "itinerary service unavailable" in run["output"]["message"]
    names = [s["name"] for s in ex.steps(run["run_id"])]
    assert names == ["book-flight", "book-hotel", "create-itinerary", "cancel-hotel",
                     "cancel-flight"]
    base = example.app.url.removesuffix("/api/inngest")
    log = httpx.get(f"{base}/travel/log").json()["log"]
    mine = [line for line in log if line.split()[1] in
            {s.get("output", {}).get("id") for s in ex.steps(run["run_id"])
             if isinstance(s.get("output"), dict)}]
    assert [line.split()[0] + " " + line.split()[1].split("-")[0] for line in mine] == [
        "book flight", "book hotel", "cancel hotel", "cancel flight"]

    # on_failure ran once, with the error and the original event
    def failure_runs() -> list[dict[str, object]]:
        runs = httpx.get(f"{ex.url}/v1/events/{run['run_id']}-failed/runs").json()["data"]
        return [r for r in runs if r["status"] == "Completed"]

    handled = wait_for(failure_runs, 20, "the on_failure handler")
    assert len(handled) == 1
    assert handled[0]["function_id"] == "llm-pipeline-trip-booking-failure"
    assert handled[0]["output"] == "trip t-42 failed: itinerary service unavailable"
