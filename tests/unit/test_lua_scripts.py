"""Each Lua script's return codes, against a real redis-server when installed and the
in-memory fake otherwise (both when both are there)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import orjson
import pytest
from redis.asyncio import Redis

from executor import keys, lifecycle
from executor.queue import QUEUE_KEYS, Queue, QueueItem
from executor.scripts import Scripts
from executor.state import RunState

from ..procs import RedisServer

NOW = 1_800_000_000_000


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not shutil.which("redis-server"):
        yield None
        return
    server = RedisServer(tmp_path_factory.mktemp("lua"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest, real_redis: Any) -> AsyncIterator[Redis]:
    if request.param == "fake":
        client: Redis = fakeredis.FakeAsyncRedis()
    else:
        if real_redis is None:
            pytest.skip("redis-server not installed")
        client = Redis.from_url(real_redis.url)
        await client.flushdb()
    yield client
    await client.aclose()


async def _enqueue(redis: Redis, scripts: Scripts, run_id: str = "r1", due: int = NOW) -> None:
    item = {"run_id": run_id, "fn_id": "f", "step_id": "step", "attempt": 0, "max_attempts": 2}
    payload = {"now": NOW, "events": [], "runs": [{
        "run_key": keys.run(run_id), "runs_key": keys.event_runs("e"), "fn_runs_key": keys.runs_of_function("f"), "idem_keys": [],
        "run_id": run_id, "fields": {"status": "Running", "run_id": run_id},
        "item": item,
        "due": due}]}
    await scripts("ingest", [keys.EVENTS, keys.RUNS, QUEUE_KEYS[0], QUEUE_KEYS[1],
                             keys.QUEUE_WAKE], [orjson.dumps(payload)])


async def test_lease_returns_due_items_and_next_due(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue = Queue(redis, scripts)
    await _enqueue(redis, scripts, "r1", NOW)
    await _enqueue(redis, scripts, "r2", NOW + 5000)
    items, _, next_due = await queue.lease(NOW, 1000, 10)
    assert [i.run_id for i in items] == ["r1"]
    assert next_due == NOW + 5000
    empty, _, none_left = await queue.lease(NOW + 10_000, 1000, 10)
    assert [i.run_id for i in empty] == ["r2"] and none_left is None


async def test_renew_and_reap(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue = Queue(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    assert await queue.renew(item.id, token, NOW + 2000) is True
    assert await queue.renew(item.id, "someone-else", NOW + 2000) is False
    assert await queue.reap(NOW + 1500) == 0  # renewed: not expired yet
    assert await queue.reap(NOW + 2500) == 1
    assert await queue.renew(item.id, token, NOW + 9000) is False  # reaped: lease gone
    again, _, _ = await queue.lease(NOW + 2500, 1000, 10)
    assert [i.id for i in again] == [item.id]


async def test_complete_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    lost, _, _ = await state.complete(item, "stale-token", NOW, step_hash="h", memo=b'{"data":1}')
    assert lost == 0 and await redis.hget(keys.run_memos("r1"), "h") is None
    code, leased, st = await state.complete(
        item, token, NOW, step_hash="h", memo=b'{"data":1}', next_due=NOW,
        next_template=item.template(), lease_expiry=NOW + 1000)
    assert code == 1 and leased is not None and st is not None
    assert st.stack == [b"h"]
    # a second save of the same step keeps the first value
    code2, _, _ = await state.complete(leased, token, NOW, step_hash="h", memo=b'{"data":2}')
    assert code2 == 2
    assert await redis.hget(keys.run_memos("r1"), "h") == b'{"data":1}'
    assert await redis.lrange(keys.run_stack("r1"), 0, -1) == [b"h"]


async def test_retry_and_finish_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    assert await state.retry(item, "stale", NOW + 100, "err") is False
    assert await state.retry(item, token, NOW + 100, "err") is True
    (again,), token2, _ = await queue.lease(NOW + 100, 1000, 10)
    assert again.attempt == 1
    assert await state.finish(again, "stale", NOW, "Completed", 1) == 0
    assert await state.finish(again, token2, NOW, "Completed", 1) == 1
    assert await redis.hget(keys.run("r1"), "status") == b"Completed"
    # a second finish keeps the first status
    await _enqueue(redis, scripts, "r1")  # run exists: ingest skips it
    fake = QueueItem(id="r1:x", run_id="r1", fn_id="f")
    assert await state.finish(fake, "", NOW, "Failed", 0) == 2
    assert await redis.hget(keys.run("r1"), "status") == b"Completed"


async def test_finish_keeps_the_sdk_error_as_output_and_the_event_error_beside_it(
        redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    sent = {"code": "step_unexpected", "name": "StepUnexpectedError", "message": "m",
            "stack": None}
    normalized = {"error": "invalid status code: 500", "name": "StepUnexpectedError",
                  "message": "m", "stack": ""}
    assert await state.finish(item, token, NOW, "Failed", sent, event_error=normalized) == 1
    fields = await redis.hgetall(keys.run("r1"))
    assert orjson.loads(fields[b"output"]) == sent
    assert orjson.loads(fields[b"error"]) == normalized
    # the end events carry the normalized error, as on_failure handlers expect
    fields[b"events"] = fields[b"event"] = orjson.dumps({"name": "x", "data": {}})
    fields[b"function_id"] = b"f"
    finished, failed = lifecycle.end_events(fields, NOW)
    assert finished.wire["data"]["error"] == failed.wire["data"]["error"] == normalized


async def test_ingest_skips_taken_idempotency_key(redis: Redis) -> None:
    scripts = Scripts(redis)

    async def ingest(run_id: str) -> list[Any]:
        item = {"run_id": run_id, "fn_id": "f", "step_id": "step", "attempt": 0,
                "max_attempts": 1}
        payload = {"now": NOW, "events": [], "runs": [{
            "run_key": keys.run(run_id), "runs_key": keys.event_runs("e"), "fn_runs_key": keys.runs_of_function("f"),
            "idem_keys": [[keys.idempotency("f", "order-1"), 60]], "run_id": run_id,
            "fields": {"status": "Running"}, "item": item, "due": NOW}]}
        out: list[Any] = await scripts(
            "ingest", [keys.EVENTS, keys.RUNS, QUEUE_KEYS[0], QUEUE_KEYS[1], keys.QUEUE_WAKE],
            [orjson.dumps(payload)])
        return out

    assert await ingest("a") == [b"a", b"|"]
    assert await ingest("b") == [b"|"]


async def test_plan_codes_and_group_completion(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    planned = [("a", "call", NOW, "a"), ("b", "call", NOW, "b")]
    assert await state.plan(item, "stale", NOW, planned) == -1
    assert await state.plan(item, token, NOW, planned) == 2
    assert await redis.hget(keys.run("r1"), "disable_immediate") == b"1"
    planned, token2, _ = await queue.lease(NOW, 1000, 10)
    by_step = {i.step_id: i for i in planned}
    assert set(by_step) == {"a", "b"}
    code, leased, _ = await state.complete(
        by_step["a"], token2, NOW, step_hash="a", memo=b'{"data":1}', next_due=NOW,
        next_template=item.template(), lease_expiry=NOW + 1000)
    assert code == 1 and leased is None  # b is still pending: no discovery yet
    code, leased, _ = await state.complete(
        by_step["b"], token2, NOW, step_hash="b", memo=b'{"data":2}', next_due=NOW,
        next_template=item.template(), lease_expiry=NOW + 1000)
    assert leased is not None and leased.step_id == "step"  # the last one resumes the run


async def test_ending_a_run_removes_pauses_whose_event_name_holds_a_pipe(redis: Redis) -> None:
    scripts = Scripts(redis)
    await _enqueue(redis, scripts)
    pause_key = keys.pauses("approval|decided")
    await redis.hset(pause_key, "r1:h", "{}")
    await redis.sadd(keys.run_listeners("r1"), f"{pause_key}|r1:h")
    state = RunState(redis, scripts)
    assert await state.cancel("r1", NOW, {"message": "stop"}) is True
    assert await redis.hget(pause_key, "r1:h") is None


async def test_group_pauses_resume_the_run_when_the_last_pending_step_ends(
        redis: Redis) -> None:
    """A wait of a parallel group: plan.lua stores a pause-start item, pause.lua parks it,
    resume.lua schedules no discovery while a sibling is pending (code 1, nothing queued),
    and the sibling's completion is the one that resumes the run."""
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    ref = orjson.dumps({"op": {"id": "w", "op": "WaitForEvent"}, "started": NOW}).decode()
    assert await state.plan(item, token, NOW, [("a", "call", NOW, "a"),
                                               ("w", "pause", NOW, ref)]) == 2
    leased, token2, _ = await queue.lease(NOW, 1000, 10)
    by_step = {i.step_id: i for i in leased}
    assert by_step["w"].kind == "pause" and by_step["w"].ref == ref
    pause = {"id": "r1:w", "run_id": "r1", "fn_id": "f", "step": "w", "kind": "wait"}
    assert await state.pause(by_step["w"], token2, NOW, pause_key=keys.pauses("x"),
                             pause=pause, timeout_due=NOW + 60_000,
                             record={"id": "w", "name": "w", "status": "Waiting"}) == 1
    stored = orjson.loads(await redis.hget(keys.pauses("x"), "r1:w"))
    assert await state.resume(keys.pauses("x"), stored, b'{"name":"x"}', NOW,
                              {"id": "w", "name": "w", "status": "Completed"}) == 1
    assert await redis.smembers(keys.run_pending("r1")) == {b"a"}
    assert (await queue.lease(NOW, 1000, 10))[0] == []  # no discovery while `a` is pending
    code, nxt, _ = await state.complete(
        by_step["a"], token2, NOW, step_hash="a", memo=b'{"data":1}', next_due=NOW,
        next_template=item.template(), lease_expiry=NOW + 1000)
    assert code == 1 and nxt is not None and nxt.step_id == "step"
    assert await redis.lrange(keys.run_stack("r1"), 0, -1) == [b"w", b"a"]


async def test_a_group_wait_resumed_last_schedules_the_discovery(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    await redis.hset(keys.run("r1"), "version", "2")
    assert await state.plan(item, token, NOW, [("a", "call", NOW, "a"),
                                               ("w", "pause", NOW, "{}")]) == 2
    leased, token2, _ = await queue.lease(NOW, 1000, 10)
    by_step = {i.step_id: i for i in leased}
    await state.complete(by_step["a"], token2, NOW, step_hash="a", memo=b'{"data":1}',
                         next_due=NOW, next_template=item.template())
    pause = {"id": "r1:w", "run_id": "r1", "fn_id": "f", "step": "w", "kind": "wait"}
    await state.pause(by_step["w"], token2, NOW, pause_key=keys.pauses("x"), pause=pause,
                      timeout_due=NOW + 60_000, record={"id": "w", "name": "w"})
    stored = orjson.loads(await redis.hget(keys.pauses("x"), "r1:w"))
    assert await state.resume(keys.pauses("x"), stored, b"null", NOW,
                              {"id": "w", "name": "w"}) == 1
    (discovery,), _, _ = await queue.lease(NOW, 1000, 10)
    assert discovery.step_id == "step" and discovery.kind == "call"
    assert await redis.hget(keys.run("r1"), "disable_immediate") == b"0"  # version 2


async def test_only_calls_take_concurrency_slots(redis: Redis) -> None:
    """Timers and pause starts carry the run's slots for the call after them, but take none:
    a full key holds back calls only."""
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), token, _ = await queue.lease(NOW, 1000, 10)
    slot = {"key": "il:conc:test", "wait": "il:conc-wait:test", "limit": 1, "label": "full"}
    await redis.zadd(slot["key"], {"someone-else": NOW + 60_000})  # the key is full
    held = dataclasses.replace(item, ck=[slot])
    assert await state.plan(held, token, NOW, [("s", "sleep", NOW, "s"),
                                               ("w", "pause", NOW, "{}"),
                                               ("a", "call", NOW, "a")]) == 3
    leased, token2, _ = await queue.lease(NOW, 1000, 10)
    assert sorted(i.kind for i in leased) == ["pause", "sleep"]  # the call waits for the key
    assert all(i.ck == [slot] for i in leased)  # kept for the discovery that follows them
    assert await redis.zcard(slot["wait"]) == 1
    sleep = next(i for i in leased if i.kind == "sleep")
    await state.complete(sleep, token2, NOW, step_hash="s", memo=b"null")
    assert await redis.zcard(slot["wait"]) == 1  # releasing a timer frees no one
