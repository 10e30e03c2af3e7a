"""Flow control with real processes: two executor processes on one Redis, so every limit is
shown to hold across processes."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import REDIS_KINDS, Stack, start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real


class Flow:
    def __init__(self, stack: Stack, second: Executor) -> None:
        self.stack = stack
        self.second = second
        self.ex = stack.executor

    def send(self, name: str, data: dict[str, object], i: int = 0) -> str:
        return (self.ex if i % 2 == 0 else self.second).send(name, data)

    def marks(self, run_ids: set[str], what: str) -> list[tuple[str, float]]:
        return sorted(((r, at) for r, w, at in self.stack.lines() if r in run_ids and w == what),
                      key=lambda x: x[1])


@pytest.fixture(scope="module", params=REDIS_KINDS)
def flow(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Flow]:
    directory: pathlib.Path = tmp_path_factory.mktemp(f"flow-{request.param}")
    stack = start_stack(directory, "tests.apps.flow_app:app", redis_kind=request.param)
    second = Executor(directory, stack.redis.url, [], name="executor-b")
    second.start()
    second.wait_synced("flow-conc", "flow-idem")
    yield Flow(stack, second)
    second.stop()
    stack.stop()


def _max_overlap(starts: list[tuple[str, float]], ends: list[tuple[str, float]]) -> int:
    points = [(at, 1) for _, at in starts] + [(at, -1) for _, at in ends]
    level = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        level += delta
        peak = max(peak, level)
    return peak


def test_concurrency_caps_executing_steps(flow: Flow) -> None:
    events = [flow.send("flow/conc", {"n": i}, i) for i in range(10)]
    runs = [flow.ex.wait_run(e, timeout=60) for e in events]
    ids = {r["run_id"] for r in runs}
    starts, ends = flow.marks(ids, "start"), flow.marks(ids, "end")
    assert len(starts) == 10 and len(ends) == 10
    assert _max_overlap(starts, ends) == 2  # never more than 2, and the limit was used


def test_keyed_concurrency_lets_keys_progress_in_parallel(flow: Flow) -> None:
    events = [flow.send("flow/keyed", {"n": i, "user": "a" if i < 3 else "b"}, i)
              for i in range(6)]
    runs = [flow.ex.wait_run(e, timeout=60) for e in events]
    by_key = {"a": {r["run_id"] for r in runs[:3]}, "b": {r["run_id"] for r in runs[3:]}}
    for ids in by_key.values():
        assert _max_overlap(flow.marks(ids, "start"), flow.marks(ids, "end")) == 1
    every = by_key["a"] | by_key["b"]
    assert _max_overlap(flow.marks(every, "start"), flow.marks(every, "end")) == 2


def test_a_waiting_run_says_why(flow: Flow) -> None:
    # five runs on one key with limit 1: each holds it ~0.5 s, so the last waits ~2 s
    events = [flow.send("flow/keyed", {"n": i, "user": "c"}, 0) for i in range(5)]
    runs = [run for e in events for run in flow.ex.runs_of(e)]  # written with the event
    assert len(runs) == 5

    def reason() -> tuple[str, str] | None:
        for run in runs:
            data = httpx.get(f"{flow.ex.url}/v1/runs/{run['run_id']}").json()["data"]
            steps = httpx.get(f"{flow.ex.url}/v1/runs/{run['run_id']}/steps").json()
            if data.get("waiting_reason") and steps.get("waiting_reason"):
                return str(data["waiting_reason"]), str(steps["waiting_reason"])
        return None

    # the run API and the run's step list both say why
    assert wait_for(reason, 10, "a run held back by concurrency") == (
        "concurrency limit 1 on key c", "concurrency limit 1 on key c")
    for e in events:
        flow.ex.wait_run(e, timeout=30)


def test_throttle_spreads_starts_over_the_period(flow: Flow) -> None:
    events = [flow.send("flow/throttle", {"n": i}, i) for i in range(6)]
    runs = [flow.ex.wait_run(e, timeout=60) for e in events]
    starts = [at for _, at in flow.marks({r["run_id"] for r in runs}, "start")]
    assert len(starts) == 6
    # limit 2 per 2 s: two at once, then one every second: the 6th ~4 s after the first
    assert starts[-1] - starts[0] >= 3.5
    # the first two start together: far closer than the spacing of the later ones
    assert starts[1] - starts[0] < (starts[-1] - starts[1]) / 8


def test_rate_limit_skips_beyond_the_limit(flow: Flow) -> None:
    events = [flow.send("flow/rate", {"n": i, "user": "u1"}, i) for i in range(5)]
    other = flow.send("flow/rate", {"n": 9, "user": "u2"})
    statuses = []
    for e in events:
        run = wait_for(lambda e=e: flow.ex.runs_of(e), 20, "a run record")[0]
        run = flow.ex.wait_run(e, ("Completed", "Skipped"), timeout=20)
        statuses.append(run["status"])
        if run["status"] == "Skipped":
            assert run["output"] == {"reason": "skipped: rate limited"}
    assert statuses.count("Completed") == 2 and statuses.count("Skipped") == 3
    assert flow.ex.wait_run(other, timeout=20)["output"] == "9"
    for e in events:  # the dropped events are still stored
        assert httpx.get(f"{flow.ex.url}/v1/events/{e}").status_code == 200


def test_debounce_runs_once_with_the_last_event(flow: Flow) -> None:
    events = [flow.send("flow/debounce", {"n": i, "user": "d1"}, i) for i in range(5)]
    run = flow.ex.wait_run(events[-1], timeout=20)
    assert run["output"] == 4
    assert all(flow.ex.runs_of(e)[0]["run_id"] == run["run_id"] for e in events)
    assert len(flow.marks({run["run_id"]}, "start")) == 1


def test_debounce_timeout_forces_a_start_under_a_steady_stream(flow: Flow) -> None:
    first = flow.send("flow/debounce", {"n": 0, "user": "d2"})
    started: list[str] = []

    def keep_sending() -> bool:
        # an event every 0.5 s would push the start forever without the 3 s timeout
        event_id = flow.send("flow/debounce", {"n": len(started) + 1, "user": "d2"})
        started.append(event_id)
        return flow.ex.runs_of(first)[0]["status"] == "Completed"

    wait_for(keep_sending, 10, "the debounced run to start despite the stream", interval=0.5)
    assert len(started) < 12


def test_batch_of_seven_gives_runs_of_five_and_two(flow: Flow) -> None:
    events = [flow.send("flow/batch", {"n": i}, 0) for i in range(7)]
    first = flow.ex.wait_run(events[0], timeout=20)
    last = flow.ex.wait_run(events[-1], timeout=20)
    assert first["output"] == [0, 1, 2, 3, 4]
    assert last["output"] == [5, 6]
    lone = flow.send("flow/batch", {"n": -1})  # fails the batch `if`: runs alone at once
    assert flow.ex.wait_run(lone, timeout=10)["output"] == [-1]


def test_priority_orders_a_backlog(flow: Flow) -> None:
    # the blocker holds the only slot long enough for the whole backlog to queue up
    blocker = flow.send("flow/priority", {"n": "blocker", "vip": False, "hold": 1.5})
    run = flow.ex.wait_run(blocker, ("Running", "Completed"), timeout=10)
    wait_for(lambda: flow.marks({run["run_id"]}, "start"), 10, "the blocker to start")
    normal = [flow.send("flow/priority", {"n": f"n{i}", "vip": False}) for i in range(3)]
    vip = flow.send("flow/priority", {"n": "vip", "vip": True})
    runs = [flow.ex.wait_run(e, timeout=30) for e in [blocker, *normal, vip]]
    order = [r for r, _ in flow.marks({r["run_id"] for r in runs}, "start")]
    vip_id = runs[-1]["run_id"]
    assert order.index(vip_id) <= 1  # right after the blocker, ahead of earlier normal runs


def test_singleton_skip_and_cancel(flow: Flow) -> None:
    first = flow.send("flow/skip", {"n": 1, "user": "s"})
    flow.ex.wait_run(first, "Running", timeout=10)
    second = flow.send("flow/skip", {"n": 2, "user": "s"})
    skipped = flow.ex.wait_run(second, "Skipped", timeout=10)
    assert "singleton" in skipped["output"]["reason"]
    assert flow.ex.wait_run(first, timeout=20)["output"] == "1"

    old = flow.send("flow/replace", {"n": 1, "user": "s"})
    flow.ex.wait_run(old, "Running", timeout=10)
    new = flow.send("flow/replace", {"n": 2, "user": "s"})
    cancelled = flow.ex.wait_run(old, "Cancelled", timeout=10)
    assert "singleton" in cancelled["output"]["message"]
    assert flow.ex.wait_run(new, timeout=20)["output"] == "2"


def test_invoking_a_rate_limited_function_fails_at_once(flow: Flow) -> None:
    started = time.monotonic()
    run = flow.ex.wait_run(flow.send("flow/invoke-rate", {"user": "inv"}), timeout=30)
    assert run["output"][:2] == ["0", "1"]
    assert run["output"][2].startswith("error: invoked function flow-rate did not run")
    assert "rate limited" in run["output"][2]
    assert time.monotonic() - started < 30  # not the invoke's 300 s timeout


def test_idempotency_key_ignores_duplicates(flow: Flow) -> None:
    a = flow.send("flow/order", {"order_id": "o-1"})
    dup = flow.send("flow/order", {"order_id": "o-1"}, 1)
    b = flow.send("flow/order", {"order_id": "o-2"})
    assert flow.ex.wait_run(a, timeout=10)["output"] == "o-1"
    assert flow.ex.wait_run(b, timeout=10)["output"] == "o-2"
    # the duplicate starts nothing, and says so: a Skipped run naming the run with the key
    (skipped,) = flow.ex.runs_of(dup)
    assert skipped["status"] == "Skipped" and "o-1" in skipped["output"]["reason"]
