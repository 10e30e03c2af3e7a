"""Redis (AOF on) killed and restarted mid-run: the runs complete, no accepted event is lost,
and memoized steps are not re-run."""

from __future__ import annotations

import pathlib

import httpx
import pytest

from ..conftest import start_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


def test_redis_restart_mid_run(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, app_env={"STEP_DELAY": "0.15"})
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        before = [ex.send("test/ten-steps", {"n": i}) for i in range(10)]
        wait_for(lambda: len(stack.lines()) >= 20, 30, "20 step executions")
        stack.redis.kill9()
        # while Redis is down nothing is accepted: the API must say so, not answer 200
        down = httpx.post(f"{ex.url}/e/k", json={"name": "test/ten-steps"}, timeout=10)
        assert down.status_code == 503
        assert "storage unavailable" in down.json()["error"]
        stack.redis.start()
        after = [ex.send("test/ten-steps", {"n": 100 + i}) for i in range(5)]

        runs = [ex.wait_run(e, timeout=90) for e in before + after]
        assert all(r["output"] == 45 for r in runs)
        for event_id in before + after:
            assert httpx.get(f"{ex.url}/v1/events/{event_id}", timeout=5).status_code == 200

        counts = stack.counts()
        for run in runs:
            per_step = [counts.get((run["run_id"], f"step-{i}"), 0) for i in range(10)]
            assert all(1 <= c <= 2 for c in per_step), per_step
            assert sum(1 for c in per_step if c == 2) <= 1, per_step
    finally:
        stack.stop()
