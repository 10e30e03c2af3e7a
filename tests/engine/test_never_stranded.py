"""Issue 9: no run stranded, no event dropped in silence. Each test fails on the engine
before these fixes (the run stayed Running forever, or the event left no trace)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from executor import keys
from executor.driver import Completed, Outcome
from executor.invariants import StrandSweep
from executor.worker import MAX_IDLE_CALLS

from .harness import Call, Engine, ops, step_run


async def test_an_empty_206_is_a_failed_attempt_and_then_fails_the_run(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops())
    (run_id,) = await engine.send()
    for _ in range(10):  # each retry is due after a backoff: move the clock past it
        await engine.run_until_idle()
        engine.clock.advance(3_600_000)
    run = await engine.run(run_id)
    assert run["status"] == "Failed"
    assert "206 with no opcodes" in run["output"]["message"]
    assert len(engine.driver.calls) == 5  # the default 4 retries: every attempt counted


async def test_repeated_discovery_requests_are_capped(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops({"op": "DiscoveryRequest"}))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Failed"
    assert "no progress" in run["output"]["message"]
    assert len(engine.driver.calls) == MAX_IDLE_CALLS + 1


async def test_an_sdk_answering_the_same_step_again_and_again_is_capped(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops(step_run("a" * 40, 1)))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Failed" and "deterministic" in run["output"]["message"]
    assert len(engine.driver.calls) == MAX_IDLE_CALLS + 2  # the first save was progress


async def test_progress_resets_the_idle_count(engine: Engine) -> None:
    """A long run of real steps, each after a discovery, is not mistaken for a loop."""
    await engine.sync({"id": "f"})
    steps = 3 * MAX_IDLE_CALLS

    def answer(call: Call) -> Outcome:
        done = len(call.steps)
        if done == steps:
            return Completed("ok")
        if len(engine.driver.calls) % 2:
            return ops({"op": "DiscoveryRequest"})
        return ops(step_run(f"{done:040d}", done))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"


async def test_the_sweep_fails_a_stranded_run_with_the_reason(engine: Engine,
                                                              redis: Redis) -> None:
    await engine.sync({"id": "f"})
    ended: list[str] = []

    async def run_ended(run_id: str) -> None:
        ended.append(run_id)

    sweep = StrandSweep(redis, engine.executor.state, engine.clock, run_ended, grace_ms=0)
    (stuck,) = await engine.send()
    (waiting,) = await engine.send()
    assert await sweep.sweep() == []  # both have their first item: fine
    # a future bug drops the first run's only item
    await redis.hdel(keys.queue_of(stuck).items, f"{stuck}:1")
    await redis.zrem(keys.queue_of(stuck).ready, f"{stuck}:1")
    # the other is parked on a pause with its timeout item gone: a pause is enough
    await redis.hdel(keys.queue_of(waiting).items, f"{waiting}:1")
    pause_key = keys.pauses("x", keys.shard_of(waiting))
    await redis.sadd(keys.run_listeners(waiting), f"{pause_key}|{waiting}:h")
    assert await sweep.sweep() == [stuck]
    run = await engine.run(stuck)
    assert run["status"] == "Failed" and "stranded" in run["output"]["message"]
    assert ended == [stuck]
    assert (await engine.run(waiting))["status"] == "Running"
    assert await redis.zscore(keys.runs_running(keys.shard_of(stuck)), stuck) is None


async def test_a_key_expression_that_fails_skips_the_run_with_the_reason(engine: Engine) -> None:
    await engine.sync({"id": "f", "idempotency": "event.data.order_id",
                       "concurrency": [{"limit": 1, "key": "event.data.customer"}]})
    engine.answer(lambda call: Completed("done"))
    (missing_a,) = await engine.send({"customer": "c1"})  # no order_id
    (missing_b,) = await engine.send({"customer": "c2"})
    (keyed,) = await engine.send({"order_id": 7})  # no customer: concurrency key fails
    (ok,) = await engine.send({"order_id": 8, "customer": "c3"})
    await engine.run_until_idle()
    for run_id in (missing_a, missing_b):
        run = await engine.run(run_id)
        assert run["status"] == "Skipped"
        assert "idempotency key `event.data.order_id` failed" in run["output"]["reason"]
    assert "concurrency key" in (await engine.run(keyed))["output"]["reason"]
    assert (await engine.run(ok))["status"] == "Completed"


async def test_idempotency_drops_are_recorded_as_skipped_runs(engine: Engine) -> None:
    await engine.sync({"id": "f", "idempotency": "event.data.order_id"})
    (first,) = await engine.send({"order_id": 1})
    (second,) = await engine.send({"order_id": 1})
    run = await engine.run(second)
    assert run["status"] == "Skipped" and f"(run {first})" in run["output"]["reason"]


async def test_debounce_key_lives_as_long_as_events_keep_joining(engine: Engine,
                                                                 redis: Redis) -> None:
    await engine.sync({"id": "f", "debounce": {"period": "10s"}})
    (run_id,) = await engine.send()
    key = keys.debounce("f", "_", keys.shard_of(run_id))  # the function's home shard
    for _ in range(12):  # two minutes of events, each within the period
        engine.clock.advance(9_000)
        assert await engine.send() == []  # joins the pending run
        assert await redis.pttl(key) > 60_000
    assert await redis.hget(key, "run") == run_id.encode()


async def test_rerun_bypasses_idempotency_debounce_and_batch(engine: Engine) -> None:
    from executor import control

    await engine.sync({"id": "idem", "idempotency": "event.data.k"},
                      {"id": "deb", "debounce": {"period": "1s"}},
                      {"id": "bat", "batchEvents": {"maxSize": 5, "timeout": "1s"}})
    engine.answer(lambda call: Completed("ok"))
    originals = await engine.send({"k": 1})
    engine.clock.advance(2_000)
    await engine.run_until_idle()
    for run_id in originals:
        again = await control.rerun(engine.executor, run_id)
        run = await engine.run(again)
        assert run["status"] == "Running" and run["rerun_of"] == run_id
    await engine.run_until_idle()


async def test_start_timeout_does_not_cancel_a_run_that_started(engine: Engine,
                                                                redis: Redis) -> None:
    await engine.sync({"id": "f", "timeouts": {"start": "1s"}})
    (run_id,) = await engine.send()
    # the first call is leased (started) just as the start timeout comes due
    items, _token, _ = await engine.executor.queue.lease(engine.clock(), 60_000, 1)
    assert [i.id for i in items] == [f"{run_id}:1"]
    engine.clock.advance(1_500)
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Running"
    assert not await redis.hexists(keys.queue_of(run_id).items, f"{run_id}:timeout-start")


async def test_start_timeout_cancels_a_run_that_never_started(engine: Engine) -> None:
    await engine.sync({"id": "f", "timeouts": {"start": "1s"}})
    (run_id,) = await engine.send()
    engine.clock.advance(1_500)
    # only the timer is due by now? both are: lease the timer alone by firing it directly
    items, token, _ = await engine.executor.queue.lease(engine.clock(), 60_000, 10)
    timer = next(i for i in items if i.kind == "timeout-start")
    await engine.executor.worker.timers.fire(timer, token, engine.clock())
    run = await engine.run(run_id)
    # the first call was leased in the same batch, so it had started: not cancelled
    assert run["status"] == "Running"
    (late,) = await engine.send()
    engine.clock.advance(1_500)
    assert await engine.executor.ingest.cancel(late, "late", unless_started=f"{late}:1")
    assert (await engine.run(late))["status"] == "Cancelled"


async def test_a_retried_complete_whose_reply_was_lost_hands_back_the_same_item(
        engine: Engine) -> None:
    await engine.sync({"id": "f"})
    await engine.send()
    (item,), token, _ = await engine.executor.queue.lease(engine.clock(), 60_000, 1)
    args: dict[str, Any] = {"step_hash": "h" * 40, "memo": b'{"data":1}', "next_due": engine.clock(),
                            "next_template": item.template(), "lease_expiry": engine.clock() + 60_000}
    code, first, _ = await engine.executor.state.complete(item, token, engine.clock(), **args)
    assert code == 1 and first is not None
    # redis-py re-sends the script after a connection error: same answer, not "lease lost"
    code, again, _ = await engine.executor.state.complete(item, token, engine.clock(), **args)
    assert code == 1 and again is not None and again.id == first.id
    # a stranger with another token still gets "lease lost"
    code, _, _ = await engine.executor.state.complete(item, "other", engine.clock(), **args)
    assert code == 0


async def test_lookback_scan_reads_a_bounded_number_of_events(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    from executor import pauses

    await engine.sync({"id": "f"})
    for i in range(pauses.MAX_LOOKBACK_EVENTS + 50):
        await redis.zadd(keys.events_by_name("big/one", 0), {f"e{i}": i})
    read: list[str] = []
    real_event = keys.event

    def counting_event(event_id: str) -> str:
        read.append(event_id)
        return real_event(event_id)

    monkeypatch.setattr(keys, "event", counting_event)
    pause = {"id": "r:h", "run_id": "r", "fn_id": "f", "kind": "wait", "step": "h",
             "expr": "false"}
    await engine.executor.ingest.pauses.scan_lookback(keys.pauses("big/one", 0), pause,
                                                      "big/one", 0)
    assert len(read) == pauses.MAX_LOOKBACK_EVENTS


async def test_events_are_indexed_by_redis_time_not_the_senders_clock(engine: Engine,
                                                                      redis: Redis) -> None:
    """A process whose clock runs an hour behind still indexes its events where a wait
    that began a moment ago (by Redis time) finds them."""
    await engine.sync({"id": "f"})
    engine.clock.advance(-3_600_000)
    await engine.send(name="late/clock")
    (seconds, micros) = await redis.time()
    redis_now = seconds * 1000 + micros // 1000
    scores = [pair for s in keys.shards() for pair in await redis.zrange(
        keys.events_by_name("late/clock", s), 0, -1, withscores=True)]
    assert len(scores) == 1 and abs(scores[0][1] - redis_now) < 60_000
    raw = orjson.loads(await redis.get(keys.event(scores[0][0].decode())))
    assert raw["name"] == "late/clock"


async def test_concurrent_syncs_never_resurrect_a_removed_function(engine: Engine,
                                                                   redis: Redis) -> None:
    import asyncio

    await engine.sync({"id": "a"}, {"id": "b"})
    for round_ in range(15):
        # a deploy removing b races a stale re-sync that still has it
        sets = [({"id": "a"},), ({"id": "a"}, {"id": "b", "name": f"b{round_}"})]
        await asyncio.gather(*(engine.sync(*fns) for fns in sets[:: 1 if round_ % 2 else -1]))
        app = orjson.loads(await redis.hget(keys.APPS, "app"))
        stored = {k.decode() for k in await redis.hkeys(keys.FUNCTIONS)}
        assert stored == {f"app-{f}" for f in app["functions"]} or stored == set(
            app["functions"]), (round_, stored, app["functions"])


async def test_priority_orders_runs_due_at_the_same_time(engine: Engine) -> None:
    await engine.sync({"id": "f", "priority": {"run": "event.data.boost"}})
    order: list[int] = []

    def answer(call: Call) -> Outcome:
        order.append(int(call.event["data"]["boost"]))
        return Completed(None)

    engine.answer(answer)
    engine.executor.worker.slots = 1  # one call at a time: the order of leasing shows
    for boost in (0, 60, -60, 30):
        await engine.send({"boost": boost})
    await engine.run_until_idle()
    assert order == [60, 30, 0]  # a negative priority is a delay: not due yet
    engine.clock.advance(60_000)
    await engine.run_until_idle()
    assert order == [60, 30, 0, -60]


async def test_a_cancel_during_a_call_stops_the_run_before_its_next_step(
        engine: Engine) -> None:
    """The next call of a run is handed over (immediate execution) by the script that records
    the step, which sees a cancel that landed while the step's call was in flight."""
    await engine.sync({"id": "f"})
    cancelled: list[str] = []

    def answer(call: Call) -> Outcome:
        if not cancelled:  # the user cancels while the first step runs
            cancelled.append(call.run_id)
            asyncio.get_event_loop().create_task(
                engine.executor.ingest.cancel(call.run_id, "stop"))
        return ops(step_run(f"{len(call.steps):040d}", 1))

    async def slow_call(url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        outcome = await real_call(url, body, headers)
        await asyncio.sleep(0.05)  # the cancel lands before the step is recorded
        return outcome

    engine.answer(answer)
    real_call = engine.driver.call
    engine.driver.call = slow_call  # type: ignore[method-assign]
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Cancelled"
    assert len(engine.driver.calls) == 1  # no step after the cancel
