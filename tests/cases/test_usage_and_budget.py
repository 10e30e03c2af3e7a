"""Issue 13: cost meters and budgets with real processes. Usage a step body reports is
summed across its retries (failed attempts billed too) per step, run and function, and
shown by the API and the dashboard; a budget stops a looping agent: no further step, the
run fails with the spend and the limit, and `on_failure` runs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "agent-usage", "tests.apps.agent_app:app",
                   "agent-metered", "agent-looping-agent",
                   "agent-looping-agent-failure") as stack:
        yield stack


def test_usage_is_summed_across_retries(agent: Stack) -> None:
    ex = agent.executor
    run = ex.wait_run(ex.send("agent/metered"), timeout=30)
    run_id = run["run_id"]
    assert agent.counts()[(run_id, "llm")] == 3  # two 429s, then an answer
    # each attempt made two calls: 100 + 50 tokens in, 20 + 10 out, $0.015
    assert run["usage"]["cost_usd"] == pytest.approx(0.045)
    assert (run["usage"]["input_tokens"], run["usage"]["output_tokens"]) == (450, 90)
    assert run["usage"]["models"]["sim-1"]["cost_usd"] == pytest.approx(0.045)
    steps = {s["name"]: s for s in ex.steps(run_id)}
    llm = steps["llm"]["usage"]
    assert [a["attempt"] for a in llm["attempts"]] == [1, 2, 3]
    assert [a["cost_usd"] for a in llm["attempts"]] == pytest.approx([0.015] * 3)
    assert steps["tool"]["usage"] is None

    usage = httpx.get(f"{ex.url}/v1/functions/agent-metered/usage", timeout=10).json()["data"]
    assert usage["cost_usd"] == pytest.approx(0.045) and usage["runs_with_usage"] == 1
    assert usage["per_day"][-1]["cost_usd"] == pytest.approx(0.045)
    assert usage["cost_per_run"]["max"] == pytest.approx(0.045)

    page = httpx.get(f"{ex.url}/runs/{run_id}", timeout=10).text
    assert '<strong id="run-cost">$0.0450</strong>' in page
    assert "$0.0450 · 540 tokens over 3 attempts" in page
    functions = httpx.get(f"{ex.url}/functions", timeout=10).text
    assert "cost/run p50" in functions and "$0.0450" in functions


def test_a_budget_stops_a_looping_agent(agent: Stack) -> None:
    ex = agent.executor
    run = ex.wait_run(ex.send("agent/loop"), "Failed", timeout=30)
    run_id = run["run_id"]
    error = run["output"]
    assert error["name"] == "BudgetExceededError"
    assert "spent $0.0500 of its $0.05 budget" in error["message"]
    assert error["budget"]["usd"] == 0.05 and error["spent"]["usd"] == pytest.approx(0.05)
    assert run["usage"]["cost_usd"] == pytest.approx(0.05)

    handler = ex.wait_run(f"{run_id}-failed", "Completed", timeout=20,
                          fn_suffix="-looping-agent-failure")
    assert handler["output"] == {"failed_run": run_id, "name": "BudgetExceededError",
                                 "message": error["message"]}
    # five $0.01 thoughts, each once, and nothing after the budget was reached
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        counts = agent.counts()
        assert sorted(w for (r, w) in counts if r == run_id and w.startswith("think")) == [
            f"think-{i}" for i in range(5)]
        assert all(counts[(run_id, f"think-{i}")] == 1 for i in range(5))
        assert counts[(run_id, "on-failure")] == 1
        time.sleep(0.1)
