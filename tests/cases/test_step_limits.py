"""Issue 13: step timeouts and heartbeats with real processes. A step that runs past its
timeout (its own, or the function's default), or whose body stops beating, is ended by the
executor: a failed attempt with a clear error, retried with backoff; a body that keeps
beating runs as long as it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "agent-limits", "tests.apps.agent_app:app",
                   "agent-hangs", "agent-fn-timeout", "agent-silent") as stack:
        yield stack


def marks(stack: Stack, run_id: str) -> dict[str, float]:
    return {what: at for r, what, at in stack.lines() if r == run_id}


def test_a_step_timeout_ends_the_call_and_retries(agent: Stack) -> None:
    ex = agent.executor
    run = ex.wait_run(ex.send("agent/hangs"), timeout=30)
    assert run["output"] == "answered on attempt 1"
    at = marks(agent, run["run_id"])
    # ended after the 1 s timeout (not after the 8 s hang), then the 0.2 s backoff
    assert 1.2 <= at["slow-1"] - at["slow-0"] < 4
    assert "step 'slow' did not finish within 1s (step timeout)" in run["last_error"]
    (step,) = ex.steps(run["run_id"])
    assert step["attempts"] == 2 and step["status"] == "Completed"
    # the ended attempt was billed too: its usage reached the executor before it hung
    assert step["usage"]["cost_usd"] == pytest.approx(0.04)
    assert [a["attempt"] for a in step["usage"]["attempts"]] == [1, 2]


def test_the_functions_default_step_timeout(agent: Stack) -> None:
    ex = agent.executor
    run = ex.wait_run(ex.send("agent/fn-timeout"), timeout=30)
    assert run["output"] == "fine"
    at = marks(agent, run["run_id"])
    assert 1.2 <= at["slow-1"] - at["slow-0"] < 4
    assert "did not finish within 1s (step timeout)" in run["last_error"]


def test_a_silent_step_is_ended_and_retried(agent: Stack) -> None:
    ex = agent.executor
    run = ex.wait_run(ex.send("agent/silent"), timeout=30)
    assert run["output"] == "finished while beating"
    at = marks(agent, run["run_id"])
    # attempt 1 beat for 0.5 s, then went silent: ended 1 s later, retried after 0.2 s
    assert 1.4 <= at["job-1"] - at["job-0"] < 4
    assert "step 'long-job' sent no heartbeat for over 1s (heartbeat timeout)" in \
        run["last_error"]
    # attempt 2 worked 3 s, three times its heartbeat timeout, beating: not ended
    assert at["job-done"] - at["job-1"] >= 2.9
    (step,) = ex.steps(run["run_id"])
    assert step["attempts"] == 2 and step["output"] == "finished while beating"
