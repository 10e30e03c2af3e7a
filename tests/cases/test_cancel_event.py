"""Cancelling by event: `cancel=[Cancel(event="prim/cancel", if_exp="async.data.id ==
event.data.id")]` stops the sleeping run whose id the cancel event names, and only it; a
cancel event naming no run cancels nothing. Real processes.

Runs sleep 3 s so that a run left alone, sent right after, shows when the cancelled run would
have woken: once it has finished, the cancelled run's wake-up is past."""

from __future__ import annotations

import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, _keep_logs, start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real

NAP_S = 3


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: pathlib.Path = tmp_path_factory.mktemp("cancel-event")
    stack = start_stack(directory, "tests.apps.primitives_app:app")
    try:
        stack.executor.wait_synced("primitives-cancellable")
        yield stack
    finally:
        stack.stop()
        _keep_logs(directory)


def sleeping(ex: Executor, event_id: str) -> dict[str, Any]:
    """The run of `event_id` once it sleeps in its `nap` step."""
    run = ex.wait_run(event_id, "Running", timeout=10)
    wait_for(lambda: any(s["name"] == "nap" and s["status"] == "Sleeping"
                         for s in ex.steps(run["run_id"])), 10, "the run to sleep")
    return run


def test_cancel_event_stops_only_the_matching_run(prim: Stack) -> None:
    ex = prim.executor
    mine, theirs = uuid.uuid4().hex, uuid.uuid4().hex
    doomed = sleeping(ex, ex.send("prim/cancellable", {"id": mine, "seconds": NAP_S}))
    spared = sleeping(ex, ex.send("prim/cancellable", {"id": theirs, "seconds": NAP_S}))

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
