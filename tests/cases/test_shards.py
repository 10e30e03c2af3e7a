"""A store cut into shards (`--queue-shards`), with real processes: runs spread over every
shard and complete there, two executors lease from all of them, a `kill -9` of one leaves
nothing behind, and a store refuses to change its shard count."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections import Counter

import pytest

from executor import keys

from ..conftest import start_stack
from ..procs import ROOT, Executor, wait_for

pytestmark = pytest.mark.real

SHARDS = 3


def _shard_prefixes() -> list[str]:
    keys.configure(SHARDS)
    try:
        return [keys.prefix(s) for s in keys.shards()]
    finally:
        keys.configure(1)


def test_runs_spread_over_every_shard_and_survive_a_kill9(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, executor_extra=["--queue-shards", str(SHARDS)],
                        app_env={"STEP_DELAY": "0.05"})
    other = Executor(tmp_path, stack.redis.url, [], name="executor-other",
                     extra=["--queue-shards", str(SHARDS)])
    other.start()
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        sent = [ex.send("test/ten-steps", {"n": i}) for i in range(30)]
        # both executors lease from every shard; one dies with calls in flight
        wait_for(lambda: sum(stack.counts().values()) >= 60, 30, "steps in flight")
        other.kill9()
        runs = [ex.wait_run(event_id, timeout=60) for event_id in sent]
        assert all(run["output"] == 45 for run in runs)

        # every shard holds runs, each under its own hash tag
        redis = stack.redis.client()
        places = Counter(next(p for p in _shard_prefixes()
                              if redis.exists(f"{p}:run:{run['run_id']}")) for run in runs)
        assert len(places) == SHARDS, places
        assert all(redis.hlen(f"{p}:q:items") == 0 for p in _shard_prefixes())  # all done

        # only steps in flight at the kill ran twice: every step ran, none more than twice
        counts = stack.counts()
        for run in runs:
            ran = [counts.get((run["run_id"], f"step-{i}"), 0) for i in range(10)]
            assert all(1 <= n <= 2 for n in ran), (run["run_id"], ran)
    finally:
        other.stop()
        stack.stop()


def test_a_store_keeps_its_shard_count(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, executor_extra=["--queue-shards", str(SHARDS)])
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        ex.wait_run(ex.send("test/ten-steps"), timeout=30)
        refused = subprocess.run(
            [sys.executable, "-m", "executor", "dev", "--port", "0", "--redis-url",
             stack.redis.url, "--queue-shards", "2"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2
        assert "created with --queue-shards 3" in refused.stderr
        assert "cannot change to 2" in refused.stderr
        # without the option, a later executor takes the store's count and finds its runs
        later = Executor(tmp_path, stack.redis.url, [], name="executor-later")
        later.start()
        try:
            done = later.wait_run(later.send("test/ten-steps"), timeout=30)
            assert done["output"] == 45
        finally:
            later.stop()
    finally:
        stack.stop()
