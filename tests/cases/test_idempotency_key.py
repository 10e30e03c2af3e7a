"""`ctx.idempotency_key(step_id)`: the key a step hands to a payment or e-mail API is the
same on every retry of that step within a run, and differs between runs. Real processes;
the flaky `charge` step records its key on each attempt and fails the first two."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import Stack, app_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "idempotency-key", "tests.apps.primitives_app:app",
                   "primitives-idempotent-charge") as stack:
        yield stack


def keys_seen(stack: Stack, run_id: str) -> list[str]:
    return [what.removeprefix("charge-key=") for r, what, _ in stack.lines()
            if r == run_id and what.startswith("charge-key=")]


def test_key_is_stable_across_retries_and_differs_between_runs(prim: Stack) -> None:
    ex = prim.executor
    first = ex.send("prim/charge")
    second = ex.send("prim/charge")
    runs = [ex.wait_run(first, timeout=15), ex.wait_run(second, timeout=15)]
    per_run = []
    for run in runs:
        seen = keys_seen(prim, run["run_id"])
        assert len(seen) == 3  # two failed attempts, then success
        assert len(set(seen)) == 1, seen  # one key across the retries
        assert run["output"] == seen[0]  # and the step's result is that key
        step = ex.steps(run["run_id"])[0]
        assert (step["name"], step["status"], step["attempts"]) == ("charge", "Completed", 3)
        per_run.append(seen[0])
    assert per_run[0] != per_run[1]
