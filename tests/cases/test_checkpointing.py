"""Checkpointing in our SDK: consecutive steps run in one request, each persisted through
the executor's checkpoint API before the function goes on; any checkpoint failure falls back
to the plain protocol, losing nothing and running nothing twice. Real processes; the kill -9
cases of the executor and the app mid-checkpoint are tests/cases/test_executor_kill9.py and
test_app_kill9.py (the app here checkpoints by default)."""

from __future__ import annotations

import itertools
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
        # one request ran all ten steps (after an idle executor's eager first call, which is
        # plan-only: it stops at step-0; rarely none, when the worker was leasing just then)
        assert _calls(ex.url) - before in (1, 2)
        steps = ex.steps(run["run_id"])
        assert [s["name"] for s in steps] == [f"step-{i}" for i in range(10)]
        assert all(s["status"] == "Completed" for s in steps)
        # nine checkpoints; the last step came back with the function's end (206
        # [StepRun, RunComplete]) and was saved with it
        assert [bool(s.get("checkpointed")) for s in steps] == [True] * 9 + [False]
        # each record holds when its body ran (the op's timing), not the whole call's span
        for before_, after in itertools.pairwise(steps):
            assert before_["started_at"] <= before_["ended_at"] <= after["started_at"]
        assert steps[-1]["started_at"] > steps[0]["ended_at"]
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
        # a step is held until the next one starts, then saved: refused, it is answered
        # alone, and the next call replays to the next step; the last comes with the end
        # (after an idle executor's eager, plan-only, first call)
        assert _calls(ex.url) - before in (10, 11)
        counts = stack.counts()
        assert [counts[(run["run_id"], f"step-{i}")] for i in range(10)] == [1] * 10
        assert not any(s.get("checkpointed") for s in ex.steps(run["run_id"]))
        assert httpx.get(f"{proxy_url}/refused", timeout=5).json()["refused"] >= 9
    finally:
        proxy.stop()
        stack.stop()
        _keep_logs(tmp_path)


def test_a_step_is_saved_while_the_function_waits_after_it(tmp_path: pathlib.Path) -> None:
    # the function awaits something outside any step after its first step: that step's save
    # starts at once (it is not held for the next step), so a kill -9 meanwhile loses nothing
    stack = start_stack(tmp_path)
    try:
        ex = stack.executor
        ex.wait_synced("durable-think-between")
        event_id = ex.send("test/think-between", {"seconds": 30})
        wait_for(lambda: any(w == "thinking" for _, w, _ in stack.lines()), 20, "the wait")
        run_id = next(r for r, w, _ in stack.lines() if w == "thinking")
        wait_for(lambda: [s["name"] for s in ex.steps(run_id)] == ["first"], 10,
                 "the first step saved while the function waits")
        stack.app.kill9()
        stack.app.start()
        assert ex.wait_run(event_id, timeout=60)["output"] == "one-two"  # the retry: no wait
        counts = stack.counts()
        assert counts[(run_id, "first")] == 1  # saved before the kill: not run again
        assert counts[(run_id, "thinking")] >= 2
    finally:
        stack.stop()
        _keep_logs(tmp_path)
