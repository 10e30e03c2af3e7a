"""A run's end events: `inngest/function.finished` is stored only when something uses it,
and a completed run nothing waits for ends in its finish script."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from executor import keys
from executor.driver import CallError, Completed

from .harness import Engine, ops, total


async def _finished_events(redis: Redis) -> int:
    return await total(redis, lambda s: keys.events_by_name("inngest/function.finished", s))


async def test_finished_is_not_stored_when_nothing_listens(engine: Engine,
                                                           redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed("ok"))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert await _finished_events(redis) == 0
    assert await total(redis, keys.outbox) == 0  # handled, not left for the sweep


async def test_finished_is_stored_when_a_function_is_triggered_by_it(engine: Engine,
                                                                      redis: Redis) -> None:
    await engine.sync({"id": "f"}, {"id": "audit",
                                    "triggers": [{"event": "inngest/function.finished"}]})
    engine.answer(lambda call: Completed("ok"))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert await _finished_events(redis) == 1
    runs = await engine.executor.ingest.runs_of_event(f"{run_id}-finished")
    assert len(runs) == 1  # the audit function ran for it


async def test_a_completed_run_nothing_waits_for_ends_in_its_finish_script(
        engine: Engine, redis: Redis) -> None:
    """No function listens for its end, it was not invoked, no pause waits for
    `function.finished`: finish.lua queues no end events, so the run's end costs no outbox
    entry and no read back; its metrics and root span are still noted."""
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed("ok"))
    emitted: list[str] = []
    noted: list[dict[bytes, bytes]] = []
    run_ended = engine.executor.ingest.run_ended

    async def spy(run_id: str) -> None:
        emitted.append(run_id)
        await run_ended(run_id)

    engine.executor.ingest.run_ended = spy  # type: ignore[method-assign]
    engine.executor.ingest.run_ended_quietly = noted.append
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert emitted == []
    assert [(f[b"run_id"], f[b"function_id"], f[b"status"]) for f in noted] == [
        (run_id.encode(), b"f", b"Completed")]
    # a failed run always emits (`.failed` feeds on_failure handlers and alerts)
    engine.answer(lambda call: CallError("no", {"name": "Error", "message": "no"}, False))
    (failed,) = await engine.send()
    await engine.run_until_idle()
    assert emitted == [failed] and len(noted) == 1


async def test_a_listener_synced_by_another_process_still_gets_the_end(
        engine: Engine, redis: Redis) -> None:
    """The quiet end is decided as of a registry version, checked in the script: a function
    triggered by `function.finished`, synced meanwhile by another process, gets its event."""
    from executor.registry import Registry

    await engine.sync({"id": "f"})
    body = {"appName": "app", "url": "http://app.test/api/inngest", "functions": [
        {"id": fn, "name": fn, "triggers": [{"event": trigger}],
         "steps": {"step": {"id": "step", "name": "step", "runtime": {
             "type": "http", "url": f"http://app.test/api/inngest?fnId={fn}"}}}}
        for fn, trigger in (("f", "test/go"), ("audit", "inngest/function.finished"))]}

    async def answer(call: Any) -> Any:
        if call.event["name"] == "test/go":  # the sync lands while the run's call is out
            await Registry(redis).sync(body, orjson.dumps(body), engine.clock())
        return Completed("ok")

    engine.answer(answer)
    (run_id,) = await engine.send()  # the run starts while nothing listens
    await engine.run_until_idle()
    assert await _finished_events(redis) == 1
    assert len(await engine.executor.ingest.runs_of_event(f"{run_id}-finished")) == 1


async def test_a_wait_for_a_runs_end_still_gets_it(engine: Engine, redis: Redis) -> None:
    """A pause waiting for `function.finished` (of any shard) keeps the end events."""
    await engine.sync({"id": "f"}, {"id": "watcher", "triggers": [{"event": "test/watch"}]})

    def answer(call: Any) -> Any:
        if call.event["name"] == "test/watch":
            if "w" * 40 in call.steps:
                return Completed(call.steps["w" * 40])
            return ops({"op": "WaitForEvent", "id": "w" * 40, "name": "end",
                        "opts": {"event": "inngest/function.finished", "timeout": "1h"}})
        return Completed("ok")

    engine.answer(answer)
    (watcher,) = await engine.send(name="test/watch")
    await engine.run_until_idle()
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    done = await engine.run(watcher)
    assert done["status"] == "Completed"
    assert done["output"]["data"]["run_id"] == run_id
