"""A store written by the previous version (key layout 1) with real processes: the executor
refuses it at start with the reason, and with `--migrate` renames it and serves its runs."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import httpx
import pytest

from ..conftest import _keep_logs
from ..procs import ROOT, Executor, RedisServer

pytestmark = pytest.mark.real

RUN = {"run_id": "01LAYOUT1RUN0000000000000A", "function_id": "app-f", "app_id": "app",
       "event_id": "01LAYOUT1EVENT000000000000", "status": "Completed",
       "started_at": "1796132000000", "ended_at": "1796132001000", "output": "42",
       "event": '{"name": "test/go", "data": {}}', "events": '[{"name": "test/go"}]'}


def test_a_layout_1_store_is_refused_then_migrated(tmp_path: pathlib.Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        client = redis.client()
        client.hset(f"il:run:{{r:{RUN['run_id']}}}", mapping=RUN)
        client.zadd("il:runs", {RUN["run_id"]: 1796132000000})
        refused = subprocess.run(
            [sys.executable, "-m", "executor", "dev", "--redis-url", redis.url, "--port", "0"],
            cwd=ROOT, capture_output=True, timeout=60, check=False)
        assert refused.returncode == 2
        assert b"key layout 1" in refused.stderr and b"--migrate" in refused.stderr
        assert client.exists("il:runs")  # untouched

        ex = Executor(tmp_path, redis.url, [], extra=["--migrate"])
        ex.start()
        try:
            answer = httpx.get(f"{ex.url}/v1/runs/{RUN['run_id']}", timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["status"] == "Completed"
            assert not client.exists("il:runs", f"il:run:{{r:{RUN['run_id']}}}")
        finally:
            ex.stop()
    finally:
        redis.stop()
        _keep_logs(tmp_path)
