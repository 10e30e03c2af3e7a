"""A wait and an invoke beside a step.run, in `group.parallel` and in `asyncio.gather`: the
SDK reports them in one answer; the step runs as its own call, the wait and the invoke become
pauses of their own, and the run resumes once all three are done (not when the first one
is). Real processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ..compat.harness import stays
from ..conftest import Stack, app_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "parallel-pauses", "tests.apps.primitives_app:app",
                   "primitives-parallel-pauses", "primitives-add") as stack:
        yield stack


@pytest.mark.parametrize("gather", [False, True], ids=["group-parallel", "asyncio-gather"])
def test_wait_and_invoke_beside_a_step_resume_the_run_when_all_are_done(
        prim: Stack, gather: bool) -> None:
    ex = prim.executor
    key = uuid.uuid4().hex
    event_id = ex.send("prim/parallel-pauses", {"key": key, "gather": gather})
    run = ex.wait_run(event_id, "Running", timeout=10)
    run_id = run["run_id"]

    def status(name: str) -> str | None:
        return next((s["status"] for s in ex.steps(run_id) if s["name"] == name), None)

    # the step ran and the invoke came back while the wait still waits: no resumption yet
    wait_for(lambda: status("quick") == "Completed" and status("call-add") == "Completed"
             and status("wait-reply") == "Waiting", 15, "quick and call-add done, wait-reply waiting")
    stays(lambda: ex.run(run_id)["status"] == "Running"
          and (run_id, "after") not in prim.counts(), 1.0,
          "the run must not go on while its wait is pending")
    ex.send("prim/pp-reply", {"key": "someone-else"})
    ex.send("prim/pp-reply", {"key": key, "answer": 42})
    done = ex.wait_run(event_id, ("Completed", "Failed"), timeout=15)
    assert done["status"] == "Completed", done
    assert done["output"] == {"quick": "quick-done", "reply": {"key": key, "answer": 42},
                              "added": {"sum": 3}}
    counts = prim.counts()
    assert counts[(run_id, "quick")] == 1 and counts[(run_id, "after")] == 1
    steps = {s["name"]: s for s in ex.steps(run_id)}
    assert {"quick", "wait-reply", "call-add", "after"} <= set(steps)
    assert steps["wait-reply"]["status"] == "Completed"
