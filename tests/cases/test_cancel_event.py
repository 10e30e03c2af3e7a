"""Cancelling by event: `cancel=[Cancel(event="prim/cancel", if_exp="async.data.id ==
event.data.id")]` stops the sleeping run whose id the cancel event names, and only it; a
cancel event naming no run cancels nothing. Real processes.

Runs sleep 3 s so that a run left alone, sent right after, shows when the cancelled run would
have woken: once it has finished, the cancelled run's wake-up is past."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import REDIS_KINDS, Stack, app_stack
from ..procs import wait_for

pytestmark = pytest.mark.real

NAP_S = 3


@pytest.fixture(scope="module", params=REDIS_KINDS)
def prim(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "cancel-event", "tests.apps.primitives_app:app",
                   "primitives-cancellable", redis_kind=request.param) as stack:
        yield stack



def test_cancel_event_stops_only_the_matching_run(prim: Stack) -> None:
    ex = prim.executor
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    doomed = ex.wait_sleeping(ex.send("prim/cancellable", {"id": mine, "seconds": NAP_S}))
    spared = ex.wait_sleeping(ex.send("prim/cancellable", {"id": theirs, "seconds": NAP_S}))

    ex.send("prim/cancel", {"id": "no-such-run"})
    # a matching cancel event ends the run before its send is answered: a second is ample
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert ex.run(doomed["run_id"])["status"] == "Running"
        assert ex.run(spared["run_id"])["status"] == "Running"
        time.sleep(0.1)

    cancel_id = ex.send("prim/cancel", {"id": mine})
    run = wait_for(lambda: (r := ex.run(doomed["run_id"]))["status"] == "Cancelled" and r,
                   5, "the run to be cancelled by prim/cancel")
    assert run["output"]["name"] == "FunctionCancelled"
    assert "prim/cancel" in run["output"]["message"]
    assert cancel_id in run["output"]["message"]
    assert ex.run(spared["run_id"])["status"] == "Running"
    cancelled = httpx.get(f"{ex.url}/v1/events/{doomed['run_id']}-cancelled", timeout=10)
    assert cancelled.status_code == 200, cancelled.text

    # the spared run slept as long and woke later: by its end the doomed run's nap was over
    assert ex.wait_run(spared["event_id"], timeout=15)["output"] == "woke up"
    counts = prim.counts()
    assert counts[(spared["run_id"], "after")] == 1
    assert counts[(doomed["run_id"], "before")] == 1
    assert (doomed["run_id"], "resumed") not in counts  # no call after the nap
    assert (doomed["run_id"], "after") not in counts
    assert ex.run(doomed["run_id"])["status"] == "Cancelled"
