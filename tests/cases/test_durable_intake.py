"""Idempotent, durable ingest with real processes: what an event does to runs already there
(resume a wait, cancel on `cancelOn`) is stored with the event, so a `kill -9` of the
executor between storing the event and acting on it loses nothing; and a sender repeating an
event id gets the first event's id back, with nothing new stored and no second run."""

from __future__ import annotations

import pathlib
import uuid

import httpx
import pytest

from executor import keys

from ..conftest import start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real


def test_kill9_between_accepting_an_event_and_matching_it_loses_nothing(
        tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, "tests.apps.primitives_app:app")
    # a second executor that SIGKILLs itself right after its ingest script stored a
    # prim/reply event (and before it offered the event to the waiting runs)
    doomed = Executor(tmp_path, stack.redis.url, [], name="executor-doomed",
                      env={"INNGEST_LIKE_CRASH_AT": "intake:prim/reply"})
    doomed.start()
    try:
        ex = stack.executor
        ex.wait_synced("primitives-waiter", "primitives-cancellable")
        me, other = uuid.uuid4().hex, uuid.uuid4().hex
        waiting = ex.wait_run(ex.send("prim/wait", {"id": me, "timeout": 60}), "Running")
        wait_for(lambda: any(s["name"] == "wait-reply" and s["status"] == "Waiting"
                             for s in ex.steps(waiting["run_id"])), 10, "the wait to be stored")
        napping_event = ex.send("prim/cancellable", {"id": other, "seconds": 60})
        napping = ex.wait_sleeping(napping_event)

        with pytest.raises(httpx.TransportError):  # it died before answering
            httpx.post(f"{doomed.url}/e/test-key", timeout=10, json=[
                {"name": "prim/reply", "data": {"id": me, "answer": "yes"}},
                {"name": "prim/cancel", "data": {"id": other}}])
        wait_for(lambda: doomed.process is not None and doomed.process.poll() == -9, 10,
                 "the doomed executor to be gone")

        # its intake item's lease expires and the other executor does the work
        done = ex.wait_run(waiting["event_id"], timeout=30)
        assert done["output"] == {"matched": {"id": me, "answer": "yes"}}
        cancelled = ex.wait_run(napping_event, "Cancelled", timeout=30)
        assert cancelled["run_id"] == napping["run_id"]
        replies = httpx.get(f"{ex.url}/v1/events", params={"name": "prim/reply"},
                            timeout=10).json()["data"]
        assert [e["data"]["id"] for e in replies] == [me]  # stored once
    finally:
        doomed.stop()
        stack.stop()


def test_a_repeated_event_id_stores_nothing_new(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, "tests.apps.primitives_app:app")
    try:
        ex = stack.executor
        ex.wait_synced("primitives-three-steps")
        sender_id = f"order-{uuid.uuid4().hex}"
        first = ex.send("prim/three", {"key": sender_id}, id=sender_id)
        ex.wait_run(first)
        redis = stack.redis.client()
        wait_for(lambda: redis.zcard(keys.outbox(0)) == 0, 10, "the run's end events")
        keys_before = set(redis.keys("*"))
        again = ex.send("prim/three", {"key": sender_id}, id=sender_id)  # the sender's retry
        assert again == first
        assert set(redis.keys("*")) == keys_before
        assert len(ex.runs_of(first)) == 1
        events = httpx.get(f"{ex.url}/v1/events", params={"name": "prim/three"},
                           timeout=10).json()["data"]
        assert [e["id"] for e in events] == [first]
    finally:
        stack.stop()
