"""Cancelling through the API: `DELETE /v1/runs/{id}` stops a sleeping run for good, and
`POST /v1/cancellations` cancels only the running runs of one function started in a time
window (and matching its `if`). Real processes, one stack for the file.

Runs sleep 3 s so that a twin run, sent right after and left alone, shows when the cancelled
run would have woken: once the twin has finished, the cancelled run's wake-up is past."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, app_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real

NAP_S = 3


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "cancel-api", "tests.apps.primitives_app:app",
                   "primitives-cancellable", "primitives-bystander") as stack:
        yield stack



def start(ex: Executor, fn: str, seconds: float = NAP_S, **data: Any) -> dict[str, Any]:
    return ex.wait_sleeping(ex.send(f"prim/{fn}", {"id": uuid.uuid4().hex, "seconds": seconds,
                                               **data}))


def started_ms(run: dict[str, Any]) -> int:
    moment = datetime.datetime.fromisoformat(run["run_started_at"].replace("Z", "+00:00"))
    return round(moment.timestamp() * 1000)


def wait_until_past(iso: str) -> None:
    moment = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() + 0.2
    wait_for(lambda: time.time() >= moment, max(0.0, moment - time.time()) + 2,
             f"the clock to pass {iso}")


def test_delete_cancels_a_sleeping_run(prim: Stack) -> None:
    ex = prim.executor
    doomed = start(ex, "cancellable")
    twin = start(ex, "cancellable")

    answer = httpx.delete(f"{ex.url}/v1/runs/{doomed['run_id']}", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["status"] == "Cancelled"
    run = ex.run(doomed["run_id"])
    assert run["status"] == "Cancelled"
    assert run["output"]["name"] == "FunctionCancelled"
    assert "API" in run["output"]["message"]
    again = httpx.delete(f"{ex.url}/v1/runs/{doomed['run_id']}", timeout=10)
    assert again.status_code == 409, again.text
    cancelled = httpx.get(f"{ex.url}/v1/events/{doomed['run_id']}-cancelled", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["name"] == "inngest/function.cancelled"

    # the twin slept as long and woke later: by its end the cancelled run's nap was over
    assert ex.wait_run(twin["event_id"], timeout=15)["output"] == "woke up"
    counts = prim.counts()
    assert counts[(twin["run_id"], "after")] == 1
    assert counts[(doomed["run_id"], "before")] == 1
    assert (doomed["run_id"], "resumed") not in counts  # no call after the nap
    assert (doomed["run_id"], "after") not in counts
    assert ex.run(doomed["run_id"])["status"] == "Cancelled"
    finished = httpx.delete(f"{ex.url}/v1/runs/{twin['run_id']}", timeout=10)
    assert finished.status_code == 409, finished.text  # a completed run stays completed
    assert ex.run(twin["run_id"])["status"] == "Completed"


def test_steps_of_a_cancelled_run_do_not_show_the_sleep_pending_or_done(prim: Stack) -> None:
    ex = prim.executor
    run = start(ex, "cancellable", 1)
    assert httpx.delete(f"{ex.url}/v1/runs/{run['run_id']}", timeout=10).status_code == 200

    def nap() -> dict[str, Any]:
        return next(s for s in ex.steps(run["run_id"]) if s["name"] == "nap")

    wake = nap()["until"]
    assert nap()["status"] != "Sleeping"  # the run is cancelled: nothing sleeps any more
    wait_until_past(wake)
    assert nap()["status"] != "Completed"  # the sleep was cut short, it never completed


def test_bulk_cancellation_takes_one_function_in_a_window(prim: Stack) -> None:
    ex = prim.executor
    before = start(ex, "cancellable", 30)
    first = start(ex, "cancellable", 30)
    other_fn = start(ex, "bystander", 30)
    last = start(ex, "cancellable", 30)
    after = start(ex, "cancellable", 30)
    times = [started_ms(r) for r in (before, first, other_fn, last, after)]
    assert times == sorted(times) and times[0] < times[1] and times[3] < times[4]

    body = {"function_id": "primitives-cancellable",
            "started_after": first["run_started_at"],  # RFC 3339
            "started_before": started_ms(last)}       # unix ms
    answer = httpx.post(f"{ex.url}/v1/cancellations", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["count"] == 2
    assert sorted(data["run_ids"]) == sorted([first["run_id"], last["run_id"]])
    for run in (first, last):
        got = ex.run(run["run_id"])
        assert got["status"] == "Cancelled"
        assert got["output"]["name"] == "FunctionCancelled"
    for run in (before, other_fn, after):
        assert ex.run(run["run_id"])["status"] == "Running"
        assert httpx.delete(f"{ex.url}/v1/runs/{run['run_id']}", timeout=10).status_code == 200


def test_bulk_cancellation_if_expression(prim: Stack) -> None:
    ex = prim.executor
    keep = start(ex, "cancellable", 30, tier="gold")
    drop = start(ex, "cancellable", 30, tier="free")
    body = {"function_id": "primitives-cancellable", "started_after": started_ms(keep),
            "if": "event.data.tier == 'free'"}
    answer = httpx.post(f"{ex.url}/v1/cancellations", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["run_ids"] == [drop["run_id"]]
    assert ex.run(drop["run_id"])["status"] == "Cancelled"
    assert ex.run(keep["run_id"])["status"] == "Running"
    assert httpx.delete(f"{ex.url}/v1/runs/{keep['run_id']}", timeout=10).status_code == 200


@pytest.mark.parametrize(("body", "words"), [
    ({"started_after": 0}, "function_id"),
    ({"function_id": "primitives-cancellable", "if": "event.data.tier =="}, "if: invalid CEL"),
    ({"function_id": "primitives-cancellable", "started_after": "yesterday"}, "started_after"),
], ids=["no-function", "bad-if", "bad-time"])
def test_bulk_cancellation_refuses_a_bad_request(prim: Stack, body: dict[str, Any],
                                                 words: str) -> None:
    ex = prim.executor
    running = start(ex, "cancellable", 30)
    answer = httpx.post(f"{ex.url}/v1/cancellations", json=body, timeout=10)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert ex.run(running["run_id"])["status"] == "Running"
    assert httpx.delete(f"{ex.url}/v1/runs/{running['run_id']}", timeout=10).status_code == 200
