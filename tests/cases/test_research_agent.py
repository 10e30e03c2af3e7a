"""The seeds' research agent (example app, offline providers) completes end to end, and the
function subscribed to `research/completed` runs with its data. Real processes."""

from __future__ import annotations

import pathlib

import pytest

from ..conftest import start_stack

pytestmark = pytest.mark.real


def test_research_agent_completes_and_fans_out(tmp_path: pathlib.Path) -> None:
    # every 2nd LLM call answers 429 with Retry-After: 1 s
    stack = start_stack(
        tmp_path, "examples.fastapi_app.main:app", {"EXAMPLE_LLM_RATE_LIMIT_EVERY": "2"}
    )
    try:
        ex = stack.executor
        ex.wait_synced("llm-pipeline-research-agent", "llm-pipeline-notify-requester")
        first = ex.send("research/requested", {"topic": "durable agents"})
        run = ex.wait_run(first, timeout=30)
        assert run["output"]["summary"]["text"].startswith("Summary ")
        assert run["output"]["summary"]["cost_usd"] > 0
        assert len(run["output"]["sources"]) == 5
        steps = {s["name"]: s for s in ex.steps(run["run_id"])}
        assert list(steps) == ["search-web", *[f"extract-{i}" for i in range(5)],
                               "llm-summarize", "research/completed"]
        assert all(s["status"] == "Completed" for s in steps.values())
        assert steps["llm-summarize"]["attempts"] == 1

        # the fan-out: research/completed started notify-requester with the summary
        sent_ids = steps["research/completed"]["output"]
        assert len(sent_ids) == 1
        notified = ex.wait_run(sent_ids[0], timeout=20)
        assert notified["function_id"] == "llm-pipeline-notify-requester"
        assert notified["output"]["topic"] == "durable agents"
        assert notified["output"]["text"] == run["output"]["summary"]["text"]

        # the second run's LLM call gets a 429: retried after Retry-After, not before
        second = ex.send("research/requested", {"topic": "rate limits"})
        run2 = ex.wait_run(second, timeout=30)
        llm = next(s for s in ex.steps(run2["run_id"]) if s["name"] == "llm-summarize")
        assert llm["attempts"] == 2
        assert run2["output"]["summary"]["tokens"] > 0
    finally:
        stack.stop()
