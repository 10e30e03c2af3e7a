"""Eager first calls with real processes: the first line of a function runs while its run is
being stored, and a `kill -9` of the executor on either side of storing it runs no step twice
and loses nothing acknowledged."""

from __future__ import annotations

import contextlib
import datetime
import pathlib
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import Stack, start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real

EVENT = "prim/first-line"


@contextlib.contextmanager
def _doomed(tmp_path: pathlib.Path, point: str) -> Iterator[tuple[Stack, Executor]]:
    """A stack serving the primitives app, and a second executor on the same store that
    SIGKILLs itself at `point` of an ingest of EVENT; it runs a worker, idle, so its first
    calls are eager."""
    stack = start_stack(tmp_path, "tests.apps.primitives_app:app")
    doomed = Executor(tmp_path, stack.redis.url, [], name=f"executor-{point}",
                      env={"INNGEST_LIKE_CRASH_AT": f"{point}:{EVENT}"})
    try:
        doomed.start()
        stack.executor.wait_synced("primitives-first-line")
        yield stack, doomed
    finally:
        doomed.stop()
        stack.stop()


def _send_to_die(doomed: Executor) -> str:
    """Send EVENT to the doomed executor until it dies at its crash point (an event that
    found its worker in a lease round trip, about 1 ms a second, is not called eagerly and
    just runs); the key of the event it died on."""
    for _ in range(3):
        key = uuid.uuid4().hex
        try:
            httpx.post(f"{doomed.url}/e/test-key", json={"name": EVENT, "data": {"key": key}},
                       timeout=10)
        except httpx.TransportError:  # it died before answering
            wait_for(lambda: doomed.process is not None and doomed.process.poll() == -9, 10,
                     "the doomed executor to be gone")
            return key
    raise AssertionError("the doomed executor never reached its crash point")


def _ms(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def _marks(stack: Stack, key: str) -> list[str]:
    text = stack.counter.read_text() if stack.counter.exists() else ""
    return [line.split()[1] for line in text.splitlines() if line.split()[0] == key]


def test_an_idle_executor_calls_a_new_run_eagerly_plan_only(tmp_path: pathlib.Path) -> None:
    """(That the call goes out before the ingest script: tests/engine/test_eager_calls.py.)"""
    stack = start_stack(tmp_path, "tests.apps.primitives_app:app")
    try:
        ex = stack.executor
        ex.wait_synced("primitives-first-line")
        patterns = []
        for _ in range(3):  # one at a time: the executor is idle for each
            key = uuid.uuid4().hex
            run = ex.wait_run(ex.send(EVENT, {"key": key}), timeout=30)
            assert run["output"] == "charged"
            # well within the lease (2 s here): the eager answer was acted on, not retried
            assert _ms(run["ended_at"]) - _ms(run["run_started_at"]) < 1500
            assert [s["name"] for s in ex.steps(run["run_id"])] == ["charge"]
            patterns.append(_marks(stack, key))
        # the eager call ran the code before the first step and stopped there (plan-only);
        # the real first call ran it again, then the step, once. (A worker in its own lease
        # round trip, about 1 ms a second when idle, holds its slots: that event is called
        # after its script, the old way.)
        assert all(p in (["line", "line", "charge"], ["line", "charge"]) for p in patterns)
        assert patterns.count(["line", "line", "charge"]) >= 2, patterns
    finally:
        stack.stop()


def test_kill9_after_the_eager_call_before_storing_leaves_nothing(
        tmp_path: pathlib.Path) -> None:
    with _doomed(tmp_path, "eager-sent") as (stack, doomed):
        ex = stack.executor
        # a run of another event first: the doomed executor keeps its connection to the app,
        # so the eager call below is written before the kill (no connect in between)
        warm = httpx.post(f"{doomed.url}/e/test-key", timeout=10,
                          json={"name": "prim/three", "data": {"key": uuid.uuid4().hex}})
        ex.wait_run(warm.json()["ids"][0], timeout=30)
        key = _send_to_die(doomed)
        events = httpx.get(f"{ex.url}/v1/events", params={"name": EVENT}, timeout=10)
        assert key not in str(events.json()["data"])  # nothing stored, nothing acknowledged
        # the sender sends again: one run, its step once
        run = ex.wait_run(ex.send(EVENT, {"key": key}), timeout=30)
        assert run["output"] == "charged"
        assert _marks(stack, key).count("charge") == 1  # not by the eager call: plan-only


def test_kill9_after_storing_before_acting_on_the_answer_runs_the_step_once(
        tmp_path: pathlib.Path) -> None:
    with _doomed(tmp_path, "eager-stored") as (stack, doomed):
        ex = stack.executor
        key = _send_to_die(doomed)  # stored, but it died before answering
        events = httpx.get(f"{ex.url}/v1/events", params={"name": EVENT}, timeout=10)
        [event] = [e for e in events.json()["data"] if e["data"]["key"] == key]
        # the first call's lease (2 s here) expires; the other executor makes it
        run = ex.wait_run(event["id"], timeout=30)
        assert run["output"] == "charged"
        assert _marks(stack, key).count("charge") == 1
