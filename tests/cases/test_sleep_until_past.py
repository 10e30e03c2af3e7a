"""`step.sleep_until` a moment already past resumes at once: no wait, no retry interval.
Real processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import REDIS_KINDS, Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module", params=REDIS_KINDS)
def prim(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "sleep-past", "tests.apps.primitives_app:app",
                   "primitives-sleep-past", redis_kind=request.param) as stack:
        yield stack


def test_sleep_until_the_past_resumes_at_once(prim: Stack) -> None:
    ex = prim.executor
    run = ex.wait_run(ex.send("prim/sleep-past"), timeout=10)
    assert run["output"] == "no wait"
    run_id = run["run_id"]
    marks = {what: at for r, what, at in prim.lines() if r == run_id}
    assert set(marks) == {"before", "after"}
    # the sleep asked for a moment an hour ago; the retry interval here is 0.2 s and a
    # poll-based wake-up would take >= 1 s: resuming takes a few call round trips
    assert marks["after"] - marks["before"] < 0.5
    steps = {s["name"]: s for s in ex.steps(run_id)}
    assert list(steps) == ["before", "until-the-past", "after"]
    assert steps["until-the-past"]["op"] == "Sleep"
    assert prim.counts()[(run_id, "after")] == 1
