"""Retention on a store of three shards: a sweep walks every shard's indexes, so once the
period has passed each shard is back to the keys it held before (its live runs and their
indexes), whatever shard a run, its event, its event's run lists or its function's usage
totals were in. The store is seeded key by key, as the scripts lay it out (keys.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from executor import indexes, keys
from executor.read_model import ReadModel, RunQuery
from executor.retention import Retention

DAY_MS = 24 * 3600 * 1000
T0 = 1_800_000_000_000


pytestmark = pytest.mark.usefixtures("three_shards")


def _index(pipe: Any, key: str, score: float, member: str) -> None:
    pipe.zadd(key, {member: score})


async def seed_run(redis: Redis, run_id: str, fn: str, status: str, started: int,
                   event_id: str | None, data: dict[str, Any]) -> None:
    """A run with steps, memos and usage, in its shard's indexes (and its trigger event in
    the event's own shard, listing the run in the run's shard)."""
    shard = keys.shard_of(run_id)
    event = {"name": "test/go", "data": data, "id": event_id or "", "ts": started}
    output = {"summary": f"done {data}"} if status != "Running" else None
    fields: dict[str, Any] = {"run_id": run_id, "function_id": fn, "app_id": "app",
                              "status": status, "started_at": started,
                              "event": orjson.dumps(event), "event_id": event_id or ""}
    if status != "Running":
        fields.update(ended_at=started + 500, output=orjson.dumps(output))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.run(run_id), mapping=fields)
        pipe.hset(keys.run_steps(run_id), "h1", orjson.dumps({"name": "one"}))
        pipe.hset(keys.run_memos(run_id), "h1", orjson.dumps({"data": 1}))
        pipe.rpush(keys.run_stack(run_id), "h1")
        pipe.hset(keys.run_usage(run_id), "s:h1", "{}")
        _index(pipe, keys.runs(shard), started, run_id)
        _index(pipe, keys.runs_of_function(fn, shard), started, run_id)
        _index(pipe, keys.runs_of_function_status(fn, status, shard), started, run_id)
        if status == "Running":
            _index(pipe, keys.runs_running(shard), started, run_id)
        else:
            _index(pipe, keys.runs_by_status(status, shard), started, run_id)
            _index(pipe, keys.runs_stalled(shard), started + 100, run_id)  # left by a bug
        doc = indexes.run_document(event, status, output)
        for key, score, member in indexes.entries(doc, indexes.RUNS, shard):
            pipe.zadd(key, {member or run_id: float(score) if score else started})
        if event_id:
            at = keys.shard_of(event_id)
            pipe.set(keys.event(event_id), orjson.dumps(event))
            _index(pipe, keys.events(at), started, event_id)
            _index(pipe, keys.events_user(at), started, event_id)
            _index(pipe, keys.events_by_name("test/go", at), started, event_id)
            for key, score, member in indexes.entries(indexes.event_document(event),
                                                    indexes.EVENTS, at):
                pipe.zadd(key, {member or event_id: float(score) if score else started})
            pipe.rpush(keys.event_runs(event_id, shard), run_id)
        await pipe.execute()


def run_id(n: int, shard: int) -> str:
    return keys.with_shard(f"01RUN{n:05d}0", shard)


def event_id(n: int, shard: int) -> str:
    return keys.with_shard(f"01EVT{n:05d}0", shard)


async def shard_keys(redis: Redis) -> list[set[str]]:
    names = {k.decode() for k in await redis.keys("*")}
    return [{k for k in names if k.startswith(keys.prefix(shard) + ":")}
            for shard in keys.shards()]


async def test_a_sweep_leaves_every_shard_at_its_baseline(redis: Redis) -> None:
    now = [T0]
    today = (T0 + 2 * DAY_MS) // DAY_MS
    await redis.hset(keys.FUNCTIONS, "f", orjson.dumps({"app_id": "app", "config": {"id": "f"}}))
    live = []
    for shard in keys.shards():  # kept: a Running run started long ago, and a recent run
        live.append(run_id(900 + shard, shard))
        await seed_run(redis, live[-1], "f", "Running", T0 - 10, None, {"n": 900 + shard})
        live.append(run_id(950 + shard, shard))
        await seed_run(redis, live[-1], "f", "Completed", T0 + 2 * DAY_MS,
                       event_id(950 + shard, (shard + 1) % 3), {"n": 950 + shard})
        await redis.hset(keys.function_usage("f", shard), mapping={
            "cost_usd": "0.5", f"d:{today}:cost_usd": "0.5"})
    baseline = await shard_keys(redis)
    assert all(len(b) > 10 for b in baseline)

    ended = []
    for n in range(40):  # ended runs in every shard, their events in another
        shard = n % 3
        ended.append(run_id(n, shard))
        await seed_run(redis, ended[-1], "f" if n % 2 else "gone", ["Completed", "Failed"][n % 2],
                       T0 + n, event_id(n, (shard + 2) % 3),
                       {"n": n, "note": f"word{n} common"})
    # an event that started runs in two other shards, and a rerun listed after its event
    await redis.rpush(keys.event_runs(event_id(3, 2), 1), run_id(99, 1))
    for shard in keys.shards():  # a removed function's totals and old per-day spend
        await redis.hset(keys.function_usage("gone", shard), "cost_usd", "1")
        await redis.hset(keys.function_usage("f", shard), f"d:{today - 60}:cost_usd", "2")
        await redis.sadd(keys.concurrency_waiting_keys(shard), f"{keys.prefix(shard)}:empty")
    await redis.hset(keys.FUNCTIONS_REMOVED, "gone",
                     orjson.dumps({"app_id": "app", "removed_at": T0}))
    full = await shard_keys(redis)
    assert all(len(f) > len(b) + 40 for f, b in zip(full, baseline, strict=True))
    read = ReadModel(redis)
    assert (await read.runs_page(RunQuery(), None, 10)).total == 46

    retention = Retention(redis, lambda: now[0], retention_ms=DAY_MS, batch=4)
    now[0] = T0 + DAY_MS + 1000  # the ended runs and their events are past the period
    passes = 0
    while await retention.sweep() != (0, 0):  # (the scheduler stops at a pass not full)
        passes += 1
    assert passes >= 4  # 40 runs: at most 4 a shard a pass
    assert await shard_keys(redis) == baseline
    for shard in keys.shards():
        assert await redis.hkeys(keys.function_usage("f", shard)) == [
            b"cost_usd", f"d:{today}:cost_usd".encode()]
    assert not await redis.exists(keys.FUNCTIONS_REMOVED)
    page = await read.runs_page(RunQuery(), None, 10)
    assert sorted(r["run_id"] for r in page.rows) == sorted(live) and page.total == 6
    assert (await read.events_page(None, None, 10)).total == 3
