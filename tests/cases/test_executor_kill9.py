"""`kill -9` of the executor with 20 runs of a 10-step function in flight, then a restart:
all 20 complete; every step body ran exactly once, except a step in flight at the kill,
which ran at most once more."""

from __future__ import annotations

import pathlib

import pytest

from ..conftest import start_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


def test_executor_kill9_mid_flight(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, app_env={"STEP_DELAY": "0.15"})
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        events = [ex.send("test/ten-steps", {"n": i}) for i in range(20)]
        # kill once every run has started but well before they can finish
        wait_for(lambda: len(stack.lines()) >= 40, 30, "40 step executions")
        ex.kill9()
        done_at_kill = len(stack.lines())
        assert done_at_kill < 200, "the runs finished before the kill; the test proves nothing"

        ex.start()
        runs = [ex.wait_run(e, timeout=90) for e in events]
        assert [r["output"] for r in runs] == [45] * 20

        counts = stack.counts()
        for run in runs:
            per_step = [counts.get((run["run_id"], f"step-{i}"), 0) for i in range(10)]
            assert all(c >= 1 for c in per_step), per_step
            assert all(c <= 2 for c in per_step), per_step
            # only the step in flight at the kill may have run twice
            assert sum(1 for c in per_step if c == 2) <= 1, per_step
    finally:
        stack.stop()
