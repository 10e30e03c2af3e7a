"""Parallel steps: the executor calls each planned step on its own (concurrently), then
resumes the function with all results in order. Real processes."""

from __future__ import annotations

import pytest

from executor import times

from ..conftest import Stack

pytestmark = pytest.mark.real


def test_group_parallel_runs_steps_concurrently(shared_stack: Stack) -> None:
    ex = shared_stack.executor
    ex.wait_synced("durable-parallel")
    run = ex.wait_run(ex.send("test/parallel"), timeout=30)
    assert run["output"] == {"before": "start", "results": ["A", "B", "C"], "after": "end"}
    marks = [(w, at) for r, w, at in shared_stack.lines() if r == run["run_id"]]
    assert sorted(w for w, _ in marks) == ["a", "b", "c"]  # each body ran once
    starts = [at for _, at in marks]
    parts = [s for s in ex.steps(run["run_id"]) if s["name"] in ("a", "b", "c")]
    # concurrently: every part started before the shortest of them had finished
    shortest = min(times.parse_ms(s["ended_at"]) - times.parse_ms(s["started_at"])
                   for s in parts) / 1000
    assert max(starts) - min(starts) < shortest
    names = [s["name"] for s in ex.steps(run["run_id"])]
    assert names[0] == "before" and names[-1] == "after"
    assert sorted(names[1:4]) == ["a", "b", "c"]
