"""`kill -9` of the app mid-step: that step is retried, earlier steps are not re-run."""

from __future__ import annotations

import pathlib

import pytest

from ..conftest import start_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


def test_app_kill9_mid_step(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path)
    try:
        ex = stack.executor
        ex.wait_synced("durable-slow-second")
        event_id = ex.send("test/slow-second", {"seconds": 3})
        wait_for(lambda: any(w == "slow-start" for _, w, _ in stack.lines()), 20, "slow step")
        stack.app.kill9()
        stack.app.start()
        run = ex.wait_run(event_id, timeout=60)
        assert run["output"] == "one-two"
        counts = stack.counts()
        run_id = run["run_id"]
        assert counts[(run_id, "first")] == 1  # memoized before the kill: never re-run
        assert counts[(run_id, "slow-start")] == 2  # killed mid-body, then retried
        assert counts[(run_id, "slow-end")] == 1
        slow = next(s for s in ex.steps(run_id) if s["name"] == "slow")
        assert slow["status"] == "Completed"
        assert slow["attempts"] >= 2
    finally:
        stack.stop()
