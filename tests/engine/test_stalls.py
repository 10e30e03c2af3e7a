"""Issue 13: stall detection, in the engine. A running run without progress for longer than
its threshold is flagged (why, since when), its `inngest/function.stalled` event is sent
once per stall, and the flag clears when the run moves; sleeps and waits never count."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from executor import keys
from executor.driver import Completed, Outcome
from executor.read_model import ReadModel, RunQuery

from .harness import Call, Engine, ops

MINUTE = 60_000
ALERT = {"id": "alert", "retries": 0, "triggers": [{"event": "inngest/function.stalled"}]}


async def stalled_events(redis: Redis) -> list[dict[str, Any]]:
    return await ReadModel(redis).events("inngest/function.stalled", 100)


async def test_an_overdue_run_is_flagged_once_and_cleared_when_it_moves(engine: Engine,
                                                                        redis: Redis) -> None:
    await engine.sync({"id": "f", "stallThreshold": "1m"}, ALERT)
    engine.answer(lambda call: Completed("alerted" if call.event["name"].startswith(
        "inngest/") else "done"))
    stalls = engine.executor.operations.stalls
    (run_id,) = await engine.send()
    assert await stalls.sweep() == []  # due just now: not overdue
    engine.clock.advance(2 * MINUTE)  # no worker took it (none is running)
    assert await stalls.sweep() == [run_id]
    read = ReadModel(redis)
    view = await read.run(run_id)
    assert view is not None and view["stalled"]["since_ms"] == engine.clock() - 2 * MINUTE
    assert "no worker has taken it" in view["stalled"]["reason"]
    page = await read.runs_page(RunQuery(stalled=True))
    assert [r["run_id"] for r in page.rows] == [run_id]
    engine.clock.advance(MINUTE)
    assert await stalls.sweep() == []  # the same stall: no second event
    (event,) = await stalled_events(redis)
    assert event["data"]["run_id"] == run_id and event["data"]["function_id"] == "f"
    assert event["data"]["event"]["name"] == "test/go"

    await engine.run_until_idle()  # the run moves: flag cleared; the alert ran once
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and "stalled_since" not in run
    assert (await read.runs_page(RunQuery(stalled=True))).rows == []
    alerts = [c for c in engine.driver.calls if c.event["name"] == "inngest/function.stalled"]
    assert len(alerts) == 1 and alerts[0].event["data"]["run_id"] == run_id


async def test_sleeping_and_waiting_runs_are_not_stalled(engine: Engine) -> None:
    await engine.sync({"id": "f", "stallThreshold": "1m"})

    def answer(call: Call) -> Outcome:
        if call.event["data"].get("wait"):
            return ops({"op": "WaitForEvent", "id": "c" * 40, "name": "never/comes",
                        "opts": {"event": "never/comes", "timeout": "2h"}})
        return ops({"op": "Sleep", "id": "d" * 40, "name": "1h", "opts": {"duration": "1h"}})

    engine.answer(answer)
    (sleeping,) = await engine.send()
    (waiting,) = await engine.send({"wait": True})
    await engine.run_until_idle()
    engine.clock.advance(30 * MINUTE)
    assert await engine.executor.operations.stalls.sweep() == []
    for run_id in (sleeping, waiting):
        run = await engine.run(run_id)
        assert run["status"] == "Running" and "stalled_since" not in run


async def test_a_call_without_an_answer_flags_its_run(engine: Engine, redis: Redis) -> None:
    """The worker making a call flags its run once the call has been in flight for longer
    than the threshold (a timer, no polling); the answer clears the flag."""
    await engine.sync({"id": "f", "stallThreshold": "100ms"})
    answered = asyncio.Event()

    async def answer(call: Call) -> Outcome:
        engine.clock.advance(200)  # the injected clock: time passes while it is quiet
        await answered.wait()  # the provider accepted the request and went quiet
        return Completed("late")

    engine.answer(answer)
    (run_id,) = await engine.send()
    working = asyncio.create_task(engine.run_until_idle())
    try:
        for _ in range(250):  # flagged, then its event sent: wait for both (bounded)
            if await stalled_events(redis):
                break
            await asyncio.sleep(0.02)
        view = await ReadModel(redis).run(run_id)
        assert view is not None and view["stalled"] is not None
        assert view["stalled"]["reason"].startswith("no answer from the app for over 0.1s")
        (event,) = await stalled_events(redis)
        assert event["data"]["run_id"] == run_id
    finally:
        answered.set()
        await asyncio.wait_for(working, 10)
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and "stalled_since" not in run
    assert not await redis.exists(*map(keys.runs_stalled, keys.shards()))


async def test_runs_that_ended_leave_the_stalled_index(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f", "stallThreshold": "1m"})
    (run_id,) = await engine.send()
    engine.clock.advance(2 * MINUTE)
    stalls = engine.executor.operations.stalls
    assert await stalls.sweep() == [run_id]
    await engine.executor.ingest.cancel(run_id, "by hand")
    await stalls.sweep()
    assert not await redis.exists(*map(keys.runs_stalled, keys.shards()))


async def test_a_step_that_beats_is_not_stalled_until_it_stops(engine: Engine,
                                                               redis: Redis) -> None:
    """A long call whose body heartbeats is working, not stalled; once the beats stop for
    the threshold, it is flagged, since its last beat."""
    await engine.sync({"id": "f", "stallThreshold": "100ms"})
    beats = engine.executor.operations.heartbeats
    answered = asyncio.Event()
    beating_until = 0

    async def answer(call: Call) -> Outcome:
        nonlocal beating_until
        for _ in range(8):  # 400 ms of work, a beat every 50 ms
            engine.clock.advance(50)
            await beats.beat(call.call_id, engine.clock())
            await asyncio.sleep(0.05)
        beating_until = engine.clock()
        await answered.wait()  # then silence (the fake clock stands still: advance it)
        return Completed("done")

    engine.answer(answer)
    (run_id,) = await engine.send()
    working = asyncio.create_task(engine.run_until_idle())
    try:
        while not beating_until:
            assert await redis.hget(keys.run(run_id), "stalled_since") is None
            await asyncio.sleep(0.02)
        engine.clock.advance(150)  # quiet for longer than the threshold
        for _ in range(250):
            if await stalled_events(redis):
                break
            await asyncio.sleep(0.02)
        view = await ReadModel(redis).run(run_id)
        assert view is not None and view["stalled"]["since_ms"] == beating_until
        assert view["stalled"]["reason"].startswith(
            "no heartbeat or checkpoint from the call for the run's next step (attempt 1) for "
            "over 0.1s")
    finally:
        answered.set()
        await asyncio.wait_for(working, 10)
    assert "stalled_since" not in await engine.run(run_id)
