"""The sweeps and gauges that walk indexes, on a store of three shards: the stall sweep reads
every shard's ready queue and stalled index, the strand sweep every shard's running runs
against their own shard's queue, /metrics sums the shards' queues, and the backfill indexes
each shard's runs and events in that shard. Seeded key by key, as the scripts lay it out."""

from __future__ import annotations

import types
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from executor import keys
from executor.backfill import backfill
from executor.invariants import StrandSweep
from executor.metrics import Metrics
from executor.read_model import ReadModel, RunQuery, parse_search
from executor.stalls import Stalls

NOW = 1_800_000_000_000
MINUTE = 60_000


pytestmark = pytest.mark.usefixtures("three_shards")


def run_id(n: int, shard: int) -> str:
    return keys.with_shard(f"01RUN{n:05d}0", shard)


async def running(redis: Redis, run: str, started: int = NOW - 10 * MINUTE) -> None:
    await redis.hset(keys.run(run), mapping={"run_id": run, "function_id": "f",
                                             "status": "Running", "started_at": started})
    await redis.zadd(keys.runs_running(keys.shard_of(run)), {run: started})


async def queued(redis: Redis, run: str, due: int) -> str:
    item_id = f"{run}:1"
    queue = keys.queue_of(run)
    await redis.hset(queue.items, item_id, orjson.dumps(
        {"id": item_id, "run_id": run, "fn_id": "f", "kind": "call"}))
    await redis.zadd(queue.ready, {item_id: due})
    return item_id


class RecordingStalls(Stalls):
    """The sweep's reads, with what it flags and clears recorded (the stall script and the
    stalled event are the writers')."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis, None, types.SimpleNamespace(functions={}),  # type: ignore[arg-type]
                         None, Metrics(), lambda: NOW,  # type: ignore[arg-type]
                         default_threshold_ms=MINUTE)
        self.flagged: list[tuple[str, int]] = []
        self.cleared: list[str] = []

    async def flag(self, run_id: str, since_ms: int, reason: str) -> bool:
        self.flagged.append((run_id, since_ms))
        return True

    async def clear(self, run_id: str, since_ms: int | None = None) -> None:
        self.cleared.append(run_id)


async def test_the_stall_sweep_reads_every_shards_queue_and_stalled_index(
        redis: Redis) -> None:
    overdue = [run_id(n, n % 3) for n in range(6)]
    for at, run in enumerate(overdue):
        await running(redis, run)
        await queued(redis, run, NOW - 5 * MINUTE + at)
    await running(redis, run_id(9, 1))
    await queued(redis, run_id(9, 1), NOW - MINUTE // 2)  # due, not for long enough
    ended = [run_id(20 + n, n) for n in range(3)]
    for run in ended:
        await redis.hset(keys.run(run), mapping={"status": "Completed"})
        await redis.zadd(keys.runs_stalled(keys.shard_of(run)), {run: NOW - MINUTE})
    await redis.zadd(keys.runs_stalled(1), {overdue[1]: NOW - MINUTE})  # still Running
    stalls = RecordingStalls(redis)
    assert await stalls.sweep() == overdue  # the oldest first, from all three shards
    assert [since for _, since in stalls.flagged] == [NOW - 5 * MINUTE + at
                                                      for at in range(6)]
    assert sorted(stalls.cleared) == sorted(ended)


async def test_metrics_sum_every_shards_queue_and_stalled_runs(redis: Redis) -> None:
    for n in range(6):
        await queued(redis, run_id(n, n % 3), NOW - (n + 1) * 1000)  # ready
        await queued(redis, run_id(10 + n, n % 3), NOW + MINUTE)  # scheduled
    await redis.zadd(keys.queue(2).leased, {f"{run_id(30, 2)}:1": NOW + MINUTE})
    for n in range(3):
        await running(redis, run_id(40 + n, n))
        await redis.zadd(keys.runs_stalled(n), {run_id(40 + n, n): NOW})
    await redis.hset(keys.run(run_id(50, 1)), "status", "Failed")  # left in the index
    await redis.zadd(keys.runs_stalled(1), {run_id(50, 1): NOW})
    text = (await Metrics().render(redis, NOW)).decode()
    assert 'inngest_like_queue_depth{state="ready"} 6.0' in text
    assert 'inngest_like_queue_depth{state="scheduled"} 6.0' in text
    assert 'inngest_like_queue_depth{state="leased"} 1.0' in text
    assert "inngest_like_queue_oldest_ready_age_seconds 6.0" in text
    assert "inngest_like_runs_stalled 3.0" in text


async def test_the_strand_sweep_checks_each_shards_runs_against_its_own_queue(
        redis: Redis) -> None:
    stranded = [run_id(n, n) for n in range(3)]
    for run in stranded:
        await running(redis, run)
    for n in range(3):  # runs with a queue item in their own shard's queue
        await running(redis, run_id(10 + n, n))
        await queued(redis, run_id(10 + n, n), NOW + MINUTE)
    failed: list[str] = []

    async def fail_if_stranded(run: str, now: int, reason: Any) -> int:
        failed.append(run)
        return 1

    async def run_ended(run: str) -> None:
        pass

    state = types.SimpleNamespace(fail_if_stranded=fail_if_stranded)
    sweep = StrandSweep(redis, state, lambda: NOW, run_ended)  # type: ignore[arg-type]
    assert await sweep.sweep() == stranded and failed == stranded


async def test_the_backfill_indexes_each_shards_runs_and_events_in_their_shard(
        redis: Redis) -> None:
    """A store written before the indexes: runs and events listed, nothing indexed."""
    runs = []
    for n in range(9):
        run, event_id = run_id(n, n % 3), keys.with_shard(f"01EVT{n:05d}0", (n + 1) % 3)
        event = {"name": "test/go", "data": {"n": n}, "id": event_id, "ts": NOW + n}
        status = ("Completed", "Failed", "Running")[n % 3]
        await redis.hset(keys.run(run), mapping={
            "run_id": run, "function_id": "f", "status": status, "started_at": NOW + n,
            "event": orjson.dumps(event), "event_id": event_id,
            **({"ended_at": NOW + n + 5} if status != "Running" else {})})
        await redis.zadd(keys.runs(keys.shard_of(run)), {run: NOW + n})
        await redis.set(keys.event(event_id), orjson.dumps(event))
        await redis.zadd(keys.events(keys.shard_of(event_id)), {event_id: NOW + n})
        runs.append(run)
    assert await backfill(redis, batch=2) == (9, 9)
    read = ReadModel(redis)
    failed = await read.runs_page(RunQuery(status="Failed"), None, 10)
    assert [r["run_id"] for r in failed.rows] == [runs[7], runs[4], runs[1]]
    found = await read.runs_page(RunQuery(function_id="f", status="Running",
                                          search=parse_search("data.n = 5")), None, 10)
    assert [r["run_id"] for r in found.rows] == [runs[5]]
    events = await read.events_page(None, None, 5, search=parse_search("data.n >= 7"))
    assert events.total == 2 and [e["id"] for e in events.rows] == [
        keys.with_shard("01EVT000080", 0), keys.with_shard("01EVT000070", 2)]
