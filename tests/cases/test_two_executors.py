"""Two executor processes on one Redis: every run completes exactly once, and no queue item
is worked by two at once (no step body runs twice, no two calls of one run overlap)."""

from __future__ import annotations

import itertools
import pathlib

import httpx
import pytest

from ..conftest import start_stack
from ..procs import Executor

pytestmark = pytest.mark.real


def test_two_executors_share_one_redis(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, app_env={"STEP_DELAY": "0.02"},
                        executor_extra=["--workers", "8"])
    second = Executor(tmp_path, stack.redis.url, [], extra=["--workers", "8"], name="executor-b")
    second.start()
    try:
        first = stack.executor
        first.wait_synced("durable-ten-steps")
        second.wait_synced("durable-ten-steps")
        events = [(first if i % 2 else second).send("test/ten-steps", {"n": i})
                  for i in range(30)]
        runs = [first.wait_run(e, timeout=90) for e in events]
        assert [r["output"] for r in runs] == [45] * 30
        assert len({r["run_id"] for r in runs}) == 30
        for e in events:
            assert len(first.runs_of(e)) == 1  # one run per event, not one per executor

        counts = stack.counts()
        for run in runs:
            assert [counts.get((run["run_id"], f"step-{i}")) for i in range(10)] == [1] * 10
        # steps of one run never overlap: each call (as the executors recorded it) started
        # after the previous one ended
        for run in runs:
            steps = httpx.get(f"{first.url}/v1/runs/{run['run_id']}/steps", timeout=10)
            spans = sorted((s["started_at"], s["ended_at"]) for s in steps.json()["data"])
            assert len(spans) == 10
            for (_, ended), (started, _) in itertools.pairwise(spans):
                assert started >= ended, f"run {run['run_id']}: calls overlapped: {spans}"
        # both processes did work
        for proc in (first, second):
            assert httpx.get(f"{proc.url}/health", timeout=5).json()["calls_made"] > 0
    finally:
        second.stop()
        stack.stop()
