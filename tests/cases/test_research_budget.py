"""Issue 13, the example: the research agent meters its LLM stand-in (429s included, which
the stand-in bills), and its budget stops a run asked to refine without end. Real
processes."""

from __future__ import annotations

import pathlib

import pytest

from ..conftest import _keep_logs, start_stack

pytestmark = pytest.mark.real


def test_the_research_agent_is_metered_and_stopped_by_its_budget(tmp_path: pathlib.Path,
                                                                 ) -> None:
    # every 2nd LLM call answers 429 with Retry-After: 1 s (and bills its prompt)
    stack = start_stack(tmp_path, "examples.fastapi_app.main:app",
                        {"EXAMPLE_LLM_RATE_LIMIT_EVERY": "2"})
    try:
        ex = stack.executor
        ex.wait_synced("llm-pipeline-research-agent", "llm-pipeline-research-agent-failure")
        # call 1 answers, so this run's summary call is the 2nd: a 429, then an answer
        warmup = ex.wait_run(ex.send("research/requested", {"topic": "warm up"}), timeout=30)
        assert warmup["usage"]["cost_usd"] > 0
        run = ex.wait_run(ex.send("research/requested", {"topic": "agents", "rounds": 50}),
                          "Failed", timeout=60)
        error = run["output"]
        assert error["name"] == "BudgetExceededError"
        assert "of its $0.02 budget" in error["message"]
        assert run["usage"]["cost_usd"] >= 0.02
        steps = {s["name"]: s for s in ex.steps(run["run_id"])}
        llm = steps["llm-summarize"]["usage"]
        assert [a["attempt"] for a in llm["attempts"]] == [1, 2]  # the 429 was billed too
        assert llm["attempts"][0]["output_tokens"] == 0 and llm["attempts"][0]["cost_usd"] > 0
        refines = [name for name in steps if name.startswith("refine-")]
        assert 0 < len(refines) < 50
        assert "research/completed" not in steps
        notice = ex.wait_run(f"{run['run_id']}-failed", "Completed", timeout=20,
                             fn_suffix="-research-agent-failure")
        assert notice["output"] == {"topic": "agents",
                                    "stopped": f"BudgetExceededError: {error['message']}"}
    finally:
        stack.stop()
        _keep_logs(tmp_path)
