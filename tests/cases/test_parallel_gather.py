"""`asyncio.gather(step.run(...), ...)`: the steps are planned together and run as
concurrent calls, each body once, and the results come back in the order given.
Real processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from executor import times

from ..conftest import REDIS_KINDS, Stack, app_stack

pytestmark = pytest.mark.real


def _shortest_call_s(steps: list[dict[str, Any]]) -> float:
    """The shortest of the parts' calls as the executor timed them (each sleeps 0.3 s): the
    floor the spread of their starts is compared with, measured in the same run."""
    return min(times.parse_ms(s["ended_at"]) - times.parse_ms(s["started_at"])
               for s in steps) / 1000


@pytest.fixture(scope="module", params=REDIS_KINDS)
def prim(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "gather", "tests.apps.primitives_app:app",
                   "primitives-gather", redis_kind=request.param) as stack:
        yield stack


def test_asyncio_gather_runs_steps_concurrently(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/gather"), timeout=15)
    assert run["output"] == ["A", "B", "C"]
    marks = [(what, at) for r, what, at in prim.lines() if r == run["run_id"]]
    assert sorted(what for what, _ in marks) == ["a", "b", "c"]  # each body ran once
    starts = [at for _, at in marks]
    steps = ex.steps(run["run_id"])
    # concurrently: every part started before the shortest of them had finished (one after
    # another, each would start after the previous one's whole call)
    assert max(starts) - min(starts) < _shortest_call_s(steps)
    assert sorted(s["name"] for s in steps) == ["a", "b", "c"]
    assert all(s["status"] == "Completed" and s["attempts"] == 1 for s in steps)
    assert {s["name"]: s["output"] for s in steps} == {"a": "A", "b": "B", "c": "C"}
