"""`step.wait_for_event`: a matching event resumes the run with that event, a timeout gives
None, `lookback` reaches an event sent before the wait began, and `if_exp` passes over
events that do not match. Real processes, one stack for the file; every run matches replies
on its own `data.id`, so tests cannot resume each other's runs."""

from __future__ import annotations

import concurrent.futures
import pathlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from executor import keys

from ..conftest import REDIS_KINDS, Stack, app_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real


@pytest.fixture(scope="module", params=REDIS_KINDS)
def prim(tmp_path_factory: pytest.TempPathFactory,
         request: pytest.FixtureRequest) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "wait-for-event", "tests.apps.primitives_app:app",
                   "primitives-waiter", redis_kind=request.param) as stack:
        yield stack


def unique() -> str:
    return uuid.uuid4().hex[:12]


def wait_step(ex: Executor, run_id: str) -> dict[str, Any]:
    return next(s for s in ex.steps(run_id) if s["name"] == "wait-reply")


def waiting(ex: Executor, event_id: str) -> dict[str, Any]:
    """The run of `event_id`, once its wait is stored (so replies sent now are offered)."""
    run = ex.wait_run(event_id, "Running", timeout=10)
    wait_for(lambda: wait_step(ex, run["run_id"])["status"] == "Waiting", 10,
             "the run to wait for prim/reply")
    return run


def stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Fail if `check` turns false within `seconds` (it is polled, never slept through)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.05)


def test_matching_event_resumes_with_its_data(prim: Stack) -> None:
    ex = prim.executor
    me = unique()
    event_id = ex.send("prim/wait", {"id": me})
    run = waiting(ex, event_id)
    assert prim.counts().get((run["run_id"], "after")) is None
    reply_id = ex.send("prim/reply", {"id": me, "answer": "yes"})
    done = ex.wait_run(event_id, timeout=10)
    assert done["output"] == {"matched": {"id": me, "answer": "yes"}}
    step = wait_step(ex, run["run_id"])
    assert step["status"] == "Completed"
    assert step["matched"] == reply_id
    assert prim.counts()[(run["run_id"], "after")] == 1


def test_timeout_gives_none(prim: Stack) -> None:
    ex = prim.executor
    started = time.monotonic()
    event_id = ex.send("prim/wait", {"id": unique(), "timeout": 1.5})
    run = waiting(ex, event_id)
    done = ex.wait_run(event_id, timeout=10)
    assert time.monotonic() - started >= 1.5
    assert done["output"] == {"matched": None}
    step = wait_step(ex, run["run_id"])
    assert step["status"] == "Completed"
    assert step.get("timed_out") is True
    assert prim.counts()[(run["run_id"], "after")] == 1


@pytest.mark.parametrize("lookback", [10, None], ids=["lookback", "no-lookback"])
def test_lookback_matches_an_event_sent_before_the_wait(prim: Stack,
                                                        lookback: int | None) -> None:
    ex = prim.executor
    me = unique()
    ex.send("prim/reply", {"id": me, "answer": "early"})  # before the run even exists
    data: dict[str, Any] = {"id": me, "timeout": 2}
    if lookback is not None:
        data["lookback"] = lookback
    event_id = ex.send("prim/wait", data)
    done = ex.wait_run(event_id, timeout=10)
    if lookback is None:
        assert done["output"] == {"matched": None}  # it waited out its timeout
        assert wait_step(ex, done["run_id"]).get("timed_out") is True
    else:
        assert done["output"] == {"matched": {"id": me, "answer": "early"}}
        assert not wait_step(ex, done["run_id"]).get("timed_out")


def test_if_exp_passes_over_a_non_matching_event(prim: Stack) -> None:
    ex = prim.executor
    me, other = unique(), unique()
    event_id = ex.send("prim/wait", {"id": me})
    run = waiting(ex, event_id)
    ex.send("prim/reply", {"id": other, "answer": "not for you"})
    # a matching event resumes the run before its send is answered: a second is ample
    stays(lambda: ex.run(run["run_id"])["status"] == "Running"
          and wait_step(ex, run["run_id"])["status"] == "Waiting", 1.0,
          "the run was resumed by an event its if_exp rejects")
    assert prim.counts().get((run["run_id"], "after")) is None
    ex.send("prim/reply", {"id": me, "answer": "for you"})
    done = ex.wait_run(event_id, timeout=10)
    assert done["output"] == {"matched": {"id": me, "answer": "for you"}}


def test_replies_through_two_executors_resume_each_run_once(
        prim: Stack, tmp_path: pathlib.Path) -> None:
    """Two executor processes each take a matching reply at the same moment: each run is
    resumed by exactly one of them (the pause, in its index bucket, is consumed once)."""
    ex = prim.executor
    second = Executor(tmp_path, prim.redis.url, [], name="executor-b")
    second.start()
    try:
        started = {me: ex.send("prim/wait", {"id": me, "timeout": 60})
                   for me in (unique() for _ in range(6))}
        runs = {me: waiting(ex, event_id)["run_id"] for me, event_id in started.items()}
        pairs = [(proc, me) for me in started for proc in (ex, second)]
        with concurrent.futures.ThreadPoolExecutor(len(pairs)) as pool:
            replies = list(pool.map(lambda pair: pair[0].send("prim/reply", {"id": pair[1]}),
                                    pairs))
        redis = prim.redis.client()
        for me, event_id in started.items():
            done = ex.wait_run(event_id, timeout=20)
            assert done["output"] == {"matched": {"id": me}}
            assert prim.counts()[(runs[me], "after")] == 1
            mine = [r for (_, who), r in zip(pairs, replies, strict=True) if who == me]
            with prim.keyed():
                links = keys.event_resumed
                resumed = [r for r in mine if redis.lrange(
                    links(r, keys.shard_of(runs[me])), 0, -1) == [runs[me].encode()]]
            assert len(resumed) == 1, f"run {runs[me]} resumed by {resumed} of {mine}"
            assert wait_step(ex, runs[me])["matched"] == resumed[0]
    finally:
        second.stop()
