"""`timeouts=Timeouts(finish=2)`: a run still sleeping 2 s after it started is cancelled,
with `timeouts.finish` as the reason, and never resumes. Real processes.

The run sleeps 3 s; a run of a function without the timeout, sent right after, shows when
it would have woken: once that one has finished, the cancelled run's wake-up is past."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import pytest

from ..conftest import Stack, app_stack
from ..procs import wait_for

pytestmark = pytest.mark.real

NAP_S = 3
FINISH_S = 2  # tests/apps/primitives_app.py: finish_timeout


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "cancel-timeouts", "tests.apps.primitives_app:app",
                   "primitives-finish-timeout", "primitives-cancellable") as stack:
        yield stack



def _ms(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def test_finish_timeout_cancels_a_sleeping_run(prim: Stack) -> None:
    ex = prim.executor
    doomed = ex.wait_sleeping(ex.send("prim/finish-timeout", {"seconds": NAP_S}))
    control = ex.wait_sleeping(ex.send("prim/cancellable", {"id": uuid.uuid4().hex,
                                                        "seconds": NAP_S}))

    run = ex.wait_run(doomed["event_id"], ("Cancelled", "Completed"), timeout=10)
    assert run["status"] == "Cancelled"
    assert run["output"]["name"] == "FunctionCancelled"
    assert "timeouts.finish" in run["output"]["message"]
    took = _ms(run["ended_at"]) - _ms(run["run_started_at"])
    assert FINISH_S * 1000 <= took < NAP_S * 1000  # at the deadline, during the nap

    # the control run slept as long and woke later: by its end the nap above was over
    assert ex.wait_run(control["event_id"], timeout=15)["output"] == "woke up"
    counts = prim.counts()
    assert counts[(control["run_id"], "after")] == 1
    assert counts[(doomed["run_id"], "before")] == 1
    assert (doomed["run_id"], "resumed") not in counts  # no call after the nap
    assert (doomed["run_id"], "after") not in counts
    assert ex.run(doomed["run_id"])["status"] == "Cancelled"


def test_finish_timeout_leaves_a_quick_run_alone(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/finish-timeout", {"seconds": 0.5}), timeout=10)
    assert run["output"] == "woke up"
    # its timer fires after it ended and must not touch it
    wait_for(lambda: _ms(run["run_started_at"]) + FINISH_S * 1000 + 500
             < datetime.datetime.now(datetime.UTC).timestamp() * 1000, 5,
             "the finish deadline to pass")
    assert ex.run(run["run_id"])["status"] == "Completed"
