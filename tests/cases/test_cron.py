"""Cron triggers with two executor processes on one Redis: every tick fires exactly once,
no second is skipped, and a `kill -9` of both executors shorter than the period skips no
tick (the missed one fires late, on restart). Real processes; with PRIMITIVES_CRON=1 the app
serves only its two tickers (`@every 1s`, `@every 4s`). The kill test runs last."""

from __future__ import annotations

import datetime
import pathlib
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, _keep_logs, start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real

STAMP = "%Y-%m-%dT%H:%M:%SZ"
EVERY_SECOND = "every-second"  # @every 1s
EVERY_FOUR = "every-four-seconds"  # @every 4s: executors take ~2 s to start here, so a
FOUR_S = 4  # restart fits in the period with room to spare


class Cron:
    def __init__(self, stack: Stack, other: Executor) -> None:
        self.stack = stack
        self.executors = [stack.executor, other]

    def ticks(self, fn: str) -> dict[int, list[dict[str, Any]]]:
        """Runs of ticker `fn` per tick (unix seconds of `scheduledAt`), each with its
        timer event's data."""
        ex = self.stack.executor
        answer = httpx.get(f"{ex.url}/v1/events",
                           params={"name": "inngest/scheduled.timer", "limit": 100}, timeout=10)
        assert answer.status_code == 200, answer.text
        out: dict[int, list[dict[str, Any]]] = {}
        for event in answer.json()["data"]:
            runs = [{**r, "timer": event["data"]} for r in ex.runs_of(event["id"])
                    if r["function_id"] == f"primitives-{fn}"]
            if runs:
                out.setdefault(seconds(event["data"]["scheduledAt"]), []).extend(runs)
        return out

    def wait_completed(self, fn: str, ticks: list[int], timeout: float) -> dict[int, Any]:
        def done() -> dict[int, Any] | None:
            found = self.ticks(fn)
            if all(any(r["status"] == "Completed" for r in found.get(t, [])) for t in ticks):
                return found
            return None

        return wait_for(done, timeout, f"the runs of {fn} ticks {[stamp(t) for t in ticks]}")

    def marks(self, fn: str) -> dict[int, int]:
        """How often ticker `fn`'s step body ran, per tick."""
        out: dict[int, int] = {}
        for _, what, _ in self.stack.lines():
            name, _, at = what.partition("=")
            if name == fn:
                out[seconds(at)] = out.get(seconds(at), 0) + 1
        return out


def seconds(text: str) -> int:
    return int(datetime.datetime.strptime(text, STAMP).replace(tzinfo=datetime.UTC).timestamp())


def stamp(tick: int) -> str:
    return datetime.datetime.fromtimestamp(tick, tz=datetime.UTC).strftime(STAMP)


def wait_until(moment: float, what: str) -> None:
    """Wait for a wall-clock moment of the cron schedule (bounded like every wait here)."""
    wait_for(lambda: time.time() >= moment, max(0.0, moment - time.time()) + 2, what, 0.01)


def fired(ex: Executor, fn: str) -> list[int]:
    """The ticks of `fn` this executor process fired, from its log."""
    return [seconds(m) for m in re.findall(rf"cron .+ fired (\S+) for primitives-{fn}\b",
                                           ex.log())]


@pytest.fixture(scope="module")
def cron(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cron]:
    directory: pathlib.Path = tmp_path_factory.mktemp("cron")
    stack = start_stack(directory, "tests.apps.primitives_app:app",
                        app_env={"PRIMITIVES_CRON": "1"})
    other = Executor(directory, stack.redis.url, [], name="executor-b")
    try:
        other.start()
        stack.executor.wait_synced(f"primitives-{EVERY_SECOND}", f"primitives-{EVERY_FOUR}")
        found = Cron(stack, other)
        # a schedule counts from when a scheduler first sees it: wait for that to be past
        wait_for(lambda: found.ticks(EVERY_SECOND), 15, "the first tick")
        yield found
    finally:
        other.stop()
        stack.stop()
        _keep_logs(directory)


def test_each_tick_fires_once_across_two_executors(cron: Cron) -> None:
    first = int(time.time()) + 1
    window = list(range(first, first + 5))
    ticks = cron.wait_completed(EVERY_SECOND, window, timeout=15)
    assert [len(ticks.get(t, [])) for t in window] == [1] * len(window)  # none twice, no gap
    marks = cron.marks(EVERY_SECOND)
    assert [marks.get(t, 0) for t in window] == [1] * len(window)
    # both processes' schedulers took part, and no tick was fired by both
    by_process = [fired(ex, EVERY_SECOND) for ex in cron.executors]
    assert all(by_process), by_process
    every = by_process[0] + by_process[1]
    assert len(every) == len(set(every)), by_process
    assert set(window) <= set(every)


def test_kill9_of_both_executors_shorter_than_the_period_skips_no_tick(cron: Cron) -> None:
    period = FOUR_S
    now = time.time()
    # the tick before the kill: the latest one if enough of its period is left
    start = int(now) // period * period
    if now > start + 2:
        start += period
    cron.wait_completed(EVERY_FOUR, [start], timeout=period + 10)
    # kill late in the period, come back once the next tick was due
    wait_until(start + period - 1, "the end of the period")
    for ex in cron.executors:
        ex.kill9()
    missed = start + period
    wait_until(missed + 0.1, "the next tick to be due while no executor runs")
    assert missed not in cron.marks(EVERY_FOUR)
    cron.executors[0].start()
    back = time.time()
    cron.executors[1].start()
    assert back < missed + period, "the restart took longer than the period"

    window = [start, missed, missed + period]
    ticks = cron.wait_completed(EVERY_FOUR, window, timeout=period + 10)
    assert [len(ticks.get(t, [])) for t in window] == [1] * len(window)
    assert [cron.marks(EVERY_FOUR).get(t, 0) for t in window] == [1] * len(window)
    # the missed tick fired late (on restart), under its own scheduled time
    late = ticks[missed][0]["timer"]
    assert seconds(late["fireAt"]) > seconds(late["scheduledAt"])
