"""Rerun: `POST /v1/runs/{id}/rerun` starts a new run from the same event, every step run
again; with `?from_step=` the steps before it are reused from the old run's memos, not run.
Real processes; the steps count their bodies by the event's `key`, which a rerun keeps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, app_stack
from ..procs import wait_for

pytestmark = pytest.mark.real
JSON = {"Content-Type": "application/json"}  # API writes are JSON (issue 10.3)


@pytest.fixture(scope="module")
def prim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "rerun", "tests.apps.primitives_app:app",
                   "primitives-three-steps") as stack:
        yield stack


def first_run(stack: Stack) -> tuple[str, dict[str, Any]]:
    key = uuid.uuid4().hex
    run = stack.executor.wait_run(stack.executor.send("prim/three", {"key": key}), timeout=10)
    assert {what: n for (k, what), n in stack.counts().items() if k == key} == {
        "one": 1, "two": 1, "three": 1}
    return key, run


def rerun(stack: Stack, run_id: str, **params: str) -> dict[str, Any]:
    answer = httpx.post(f"{stack.executor.url}/v1/runs/{run_id}/rerun", params=params,
                        headers=JSON, timeout=10)
    assert answer.status_code == 200, answer.text
    new = dict(answer.json()["data"])
    assert new["run_id"] != run_id
    return new


def wait_done(stack: Stack, run_id: str) -> dict[str, Any]:
    return wait_for(lambda: (r := stack.executor.run(run_id))["status"] == "Completed" and r,
                    10, f"run {run_id} to complete")


def test_rerun_runs_every_step_again(prim: Stack) -> None:
    key, old = first_run(prim)
    new = wait_done(prim, rerun(prim, old["run_id"])["run_id"])
    assert new["function_id"] == "primitives-three-steps"
    assert new["event_id"] == old["event_id"]  # the same event
    assert {what: n for (k, what), n in prim.counts().items() if k == key} == {
        "one": 2, "two": 2, "three": 2}
    assert all(new["output"][s] != old["output"][s] for s in ("one", "two", "three"))
    steps = prim.executor.steps(new["run_id"])
    assert [(s["name"], s["status"]) for s in steps] == [
        ("one", "Completed"), ("two", "Completed"), ("three", "Completed")]
    assert prim.executor.run(old["run_id"])["status"] == "Completed"  # untouched


def test_rerun_from_a_step_reuses_the_steps_before_it(prim: Stack) -> None:
    key, old = first_run(prim)
    new = wait_done(prim, rerun(prim, old["run_id"], from_step="two")["run_id"])
    assert new["event_id"] == old["event_id"]
    assert {what: n for (k, what), n in prim.counts().items() if k == key} == {
        "one": 1, "two": 2, "three": 2}
    assert new["output"]["one"] == old["output"]["one"]  # the memo, not a new value
    assert new["output"]["two"] != old["output"]["two"]
    assert new["output"]["three"] != old["output"]["three"]
    steps = prim.executor.steps(new["run_id"])
    assert [(s["name"], s["status"]) for s in steps] == [
        ("one", "Reused"), ("two", "Completed"), ("three", "Completed")]


def test_rerun_from_an_unknown_step_is_refused(prim: Stack) -> None:
    _, old = first_run(prim)
    answer = httpx.post(f"{prim.executor.url}/v1/runs/{old['run_id']}/rerun",
                        params={"from_step": "no-such-step"}, headers=JSON, timeout=10)
    assert answer.status_code == 400, answer.text
    assert "no-such-step" in answer.json()["error"]
