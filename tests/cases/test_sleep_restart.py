"""A sleeping run survives `kill -9` of the executor: the wake-up is durable in Redis, the
step after the sleep runs once, and the run took at least the sleep. Real processes."""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Iterator

import pytest

from ..conftest import Stack, _keep_logs, start_stack
from ..procs import wait_for

pytestmark = pytest.mark.real

SLEEP_S = 3


@pytest.fixture
def prim(tmp_path: pathlib.Path) -> Iterator[Stack]:
    stack = start_stack(tmp_path, "tests.apps.primitives_app:app")
    try:
        stack.executor.wait_synced("primitives-sleeper")
        yield stack
    finally:
        stack.stop()
        _keep_logs(tmp_path)


def _ms(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def test_sleep_survives_executor_kill9(prim: Stack) -> None:
    ex = prim.executor
    event_id = ex.send("prim/sleep", {"seconds": SLEEP_S})
    run = ex.wait_run(event_id, "Running", timeout=10)
    run_id = run["run_id"]

    def sleeping() -> bool:
        return any(s["name"] == "nap" and s["status"] == "Sleeping" for s in ex.steps(run_id))

    wait_for(sleeping, 10, "the run to sleep")
    ex.kill9()
    assert prim.counts().get((run_id, "after")) is None  # killed during the sleep
    ex.start()

    done = ex.wait_run(event_id, "Completed", timeout=20)
    assert done["output"] == "rested"
    counts = prim.counts()
    assert counts[(run_id, "before")] == 1
    assert counts[(run_id, "after")] == 1
    steps = {s["name"]: s for s in ex.steps(run_id)}
    assert list(steps) == ["before", "nap", "after"]
    assert steps["nap"]["op"] == "Sleep"
    assert steps["nap"]["status"] == "Completed"
    assert _ms(steps["nap"]["until"]) - _ms(steps["nap"]["started_at"]) >= SLEEP_S * 1000 - 50
    marks = {what: at for r, what, at in prim.lines() if r == run_id}
    assert marks["after"] - marks["before"] >= SLEEP_S
    assert _ms(done["ended_at"]) - _ms(done["run_started_at"]) >= SLEEP_S * 1000
