"""Checkpointing in our SDK: consecutive steps run in one request, each persisted through
the executor's checkpoint API before the function goes on; any checkpoint failure falls back
to the plain protocol, losing nothing and running nothing twice. Real processes; the kill -9
cases of the executor and the app mid-checkpoint are tests/cases/test_executor_kill9.py and
test_app_kill9.py (the app here checkpoints by default)."""

from __future__ import annotations

import pathlib

import httpx
import pytest

from ..conftest import _keep_logs, start_stack
from ..procs import App, Proc, free_port, wait_for

pytestmark = pytest.mark.real


def _calls(url: str) -> int:
    return int(httpx.get(f"{url}/health", timeout=5).json()["calls_made"])


def test_ten_steps_take_one_call_each_step_persisted(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path)
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        before = _calls(ex.url)
        run = ex.wait_run(ex.send("test/ten-steps", {}), timeout=30)
        assert run["output"] == 45
        assert _calls(ex.url) - before == 1  # one request ran all ten steps
        steps = ex.steps(run["run_id"])
        assert [s["name"] for s in steps] == [f"step-{i}" for i in range(10)]
        assert all(s["status"] == "Completed" and s.get("checkpointed") for s in steps)
        counts = stack.counts()
        assert [counts[(run["run_id"], f"step-{i}")] for i in range(10)] == [1] * 10
    finally:
        stack.stop()
        _keep_logs(tmp_path)


def test_refused_checkpoints_fall_back_to_one_call_per_step(tmp_path: pathlib.Path) -> None:
    # the app's API base is a proxy that refuses every checkpoint (503): each step goes back
    # to the executor in the call's answer, as without checkpointing; nothing runs twice
    proxy_port = free_port()
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    stack = start_stack(tmp_path, app_env={"INNGEST_API_BASE_URL": proxy_url})
    proxy = App(tmp_path, "tests.apps.checkpoint_refuser:app", stack.executor.url,
                port=proxy_port, name="proxy")
    try:
        Proc.start(proxy)  # it serves no SDK endpoint: wait for its own page instead
        wait_for(lambda: httpx.get(f"{proxy_url}/refused", timeout=1).status_code == 200, 30,
                 "the proxy")
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        before = _calls(ex.url)
        run = ex.wait_run(ex.send("test/ten-steps", {}), timeout=60)
        assert run["output"] == 45
        assert _calls(ex.url) - before == 11  # ten steps and the final call
        counts = stack.counts()
        assert [counts[(run["run_id"], f"step-{i}")] for i in range(10)] == [1] * 10
        assert not any(s.get("checkpointed") for s in ex.steps(run["run_id"]))
        assert httpx.get(f"{proxy_url}/refused", timeout=5).json()["refused"] >= 10
    finally:
        proxy.stop()
        stack.stop()
        _keep_logs(tmp_path)
