"""Retention: after the period passes, an ended run, its events and every index entry are
gone, and Redis is back to the key count and memory it had before; Running runs stay."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from executor import indexes, keys
from executor.driver import Completed
from executor.retention import Retention

from .harness import Call, Engine, ops, step_run

DAY_MS = 24 * 3600 * 1000


async def _footprint(redis: Redis) -> tuple[int, int]:
    """(keys, bytes they take): MEMORY USAGE summed over every key on a real Redis (the
    global used_memory also counts client buffers and hash tables Redis shrinks lazily)."""
    names = await redis.keys("*")
    try:
        sizes = [int(await redis.memory_usage(name) or 0) for name in names]
    except Exception:  # the in-memory fake has no MEMORY USAGE: count keys only there
        sizes = []
    return len(names), sum(sizes)


async def test_ended_runs_and_events_expire_back_to_the_baseline(engine: Engine,
                                                                 redis: Redis) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Any:
        if len(call.steps) < 3:  # each step metered too (its usage is the run's to delete)
            return ops({**step_run(f"{len(call.steps):040d}", "x" * 2000), "usage": {
                "calls": 1, "models": {"m": {"input_tokens": 9, "cost_usd": 0.01}}}})
        return Completed("done")

    engine.answer(answer)
    await engine.run_until_idle()
    keys_before, memory_before = await _footprint(redis)
    finished = [run_id for _ in range(50) for run_id in await engine.send({"n": 1})]
    await engine.run_until_idle()
    engine.answer(lambda call: ops({"op": "Sleep", "id": "s" * 40,
                                    "opts": {"duration": "30d"}}))
    (sleeping,) = await engine.send()  # Running (asleep) past the retention: kept
    await engine.run_until_idle()
    keys_full, memory_full = await _footprint(redis)
    assert keys_full > keys_before + 100

    retention = Retention(redis, engine.clock, retention_ms=DAY_MS, batch=20)
    assert await retention.sweep() == (0, 0)  # nothing is old yet
    engine.clock.advance(DAY_MS + 1)
    while max(await retention.sweep()) >= retention.batch:
        pass
    for run_id in finished:
        assert not await redis.exists(keys.run(run_id), keys.run_memos(run_id),
                                      keys.run_steps(run_id), keys.run_stack(run_id),
                                      keys.run_usage(run_id))
        assert await engine.executor.read.run(run_id) is None  # the API answers 404
    assert (await engine.run(sleeping))["status"] == "Running"
    assert await redis.zcard(keys.RUNS) == 1  # only the sleeping run
    assert await redis.zcard(keys.runs_of_function("f")) == 1
    keys_after, memory_after = await _footprint(redis)
    # what is left is the sleeping run's own keys and the indexes and queue it is in
    shared = {keys.RUNS, keys.RUNS_RUNNING, keys.runs_of_function("f"), keys.QUEUE_ITEMS,
              keys.QUEUE_READY, keys.QUEUE_WAKE, keys.APPS, keys.FUNCTIONS,
              keys.REGISTRY_VERSION, keys.function_usage("f")}  # a function's spend stays
    left = {k.decode() for k in await redis.keys("*")} - shared
    # the dashboard's: the sleeping run's status and search entries stay with it; the
    # statistics expire on their own
    stats = {k for k in left if k.startswith(f"{keys.PREFIX}:stats:")}
    assert all([await redis.pttl(k) > 0 for k in stats])
    event = orjson.loads(await redis.hget(keys.run(sleeping), "event"))  # type: ignore[misc]
    dashboard = {keys.runs_of_function_status("f", "Running")} | {
        key for key, _, _ in indexes.entries(indexes.event_document(event), indexes.RUNS)}
    assert left - stats <= set(keys.run_keys(sleeping)) | dashboard, left - stats
    assert keys_after - len(stats) < keys_before + len(shared) + 4 + len(dashboard)
    if memory_before:  # the fake Redis reports no memory
        assert memory_after - memory_before < (memory_full - memory_before) / 10, (
            memory_before, memory_full, memory_after)
