"""`asyncio.gather(step.run(...), ...)`: the steps are planned together and run as
concurrent calls, each body once, and the results come back in the order given.
Real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "gather", "tests.apps.primitives_app:app",
                   "primitives-gather") as stack:
        yield stack


def test_asyncio_gather_runs_steps_concurrently(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/gather"), timeout=15)
    assert run["output"] == ["A", "B", "C"]
    marks = [(what, at) for r, what, at in prim.lines() if r == run["run_id"]]
    assert sorted(what for what, _ in marks) == ["a", "b", "c"]  # each body ran once
    starts = [at for _, at in marks]
    # each body sleeps 0.3 s: one after another they would start >= 0.6 s apart
    assert max(starts) - min(starts) < 0.3
    steps = ex.steps(run["run_id"])
    assert sorted(s["name"] for s in steps) == ["a", "b", "c"]
    assert all(s["status"] == "Completed" and s["attempts"] == 1 for s in steps)
    assert {s["name"]: s["output"] for s in steps} == {"a": "A", "b": "B", "c": "C"}
