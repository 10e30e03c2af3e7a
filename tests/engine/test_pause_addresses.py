"""Issue 11, point 1, for pauses: queue items and a run's listeners set name a pause by its
id and address, never by its hash's key (keys.py builds that); the scripts that end a run
leave its pauses, which the outbox's processing removes after the end (unlisten.lua), and a
crash in between is redone by the outbox sweep. Items and members written before addresses
are still read."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from executor import keys
from executor.driver import Completed, Outcome
from executor.queue import EmitInvoke

from .harness import Call, Engine, ops, total

WAIT = "w" * 40
APPROVED = "shop/approved"
CANCELLED = "shop/cancelled"
MATCH = "async.data.order == event.data.order"
CANCEL_ON = {"id": "f", "cancel": [{"event": CANCELLED, "if": MATCH}]}


def waiter(call: Call) -> Outcome:
    if WAIT in call.steps:
        return Completed({"resumed_by": call.steps[WAIT]})
    return ops({"op": "WaitForEvent", "id": WAIT, "name": "approval",
                "opts": {"event": APPROVED, "timeout": "10s", "if": MATCH}})


def _bucket(name: str, order: str, run_id: str) -> str:
    return keys.pause_bucket(name, "data.order", f'"{order}"', keys.shard_of(run_id))


async def _stored_anywhere(redis: Redis, run_id: str) -> list[str]:
    """The pause hashes (of every shard) that still hold a pause of `run_id`."""
    found = []
    for shard in keys.shards():
        async for raw in redis.scan_iter(match=f"{keys.prefix(shard)}:pause*"):
            if await redis.type(raw) == b"hash" and any(
                    f.decode().startswith(run_id) for f in await redis.hkeys(raw)):  # type: ignore[misc]
                found.append(raw.decode())
    return found


async def test_items_and_members_name_pauses_by_address(engine: Engine,
                                                         redis: Redis) -> None:
    await engine.sync(CANCEL_ON)
    engine.answer(waiter)
    (run_id,) = await engine.send({"order": "o-1"})
    await engine.run_until_idle()
    members = await redis.smembers(keys.run_listeners(run_id))  # type: ignore[misc]
    wait_id, cancel_id = f"{run_id}:{WAIT}", f"{run_id}:cancel:0"
    assert {orjson.loads(m)[0]: orjson.loads(m)[1:] for m in members} == {
        wait_id: ["b", APPROVED, "data.order", '"o-1"'],
        cancel_id: ["b", CANCELLED, "data.order", '"o-1"']}
    timeout = await redis.hget(keys.queue_of(run_id).items, f"{run_id}:t:{wait_id}")
    assert orjson.loads(timeout)["payload"] == {  # type: ignore[arg-type]
        "pause_id": wait_id, "address": ["b", APPROVED, "data.order", '"o-1"']}
    for raw in await redis.hvals(keys.queue_of(run_id).items):  # type: ignore[misc]
        assert keys.prefix(keys.shard_of(run_id)).encode() not in raw
    for member in members:
        assert b"il:" not in member


async def test_a_completed_runs_cancel_listener_goes_with_its_end(
        engine: Engine, redis: Redis) -> None:
    """The worker knows a run's cancel listeners (from its trigger and its function's
    `cancelOn`) and names them to finish.lua, which removes them with the end: a completed
    run nothing waits for still ends quietly, nothing queued in the outbox."""
    await engine.sync(CANCEL_ON)
    engine.answer(lambda call: Completed("ok"))
    engine.executor.ingest.on_run_ended = None  # nothing done after the end's script
    (run_id,) = await engine.send({"order": "o-1"})
    assert await redis.hexists(_bucket(CANCELLED, "o-1", run_id),  # type: ignore[misc]
                               f"{run_id}:cancel:0")
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert await _stored_anywhere(redis, run_id) == []
    assert not await redis.exists(keys.run_listeners(run_id))
    assert await total(redis, keys.outbox) == 0


async def test_a_run_ending_with_pauses_it_does_not_name_removes_them_after_its_end(
        engine: Engine, redis: Redis) -> None:
    """A listener the worker cannot name (the function's `cancelOn` changed since the run
    started) keeps the run out of the quiet end: its end's processing removes it."""
    await engine.sync(CANCEL_ON)
    engine.answer(lambda call: Completed("ok"))
    (run_id,) = await engine.send({"order": "o-1"})
    await engine.sync({"id": "f", "cancel": [{"event": "shop/other"}]})
    ended: list[str] = []
    run_ended = engine.executor.ingest.on_run_ended
    assert run_ended is not None

    async def seen(run: str) -> None:
        ended.append(run)
        await run_ended(run)

    engine.executor.ingest.on_run_ended = seen
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert ended == [run_id]  # through the outbox's processing
    assert await _stored_anywhere(redis, run_id) == []
    assert not await redis.exists(keys.run_listeners(run_id))
    assert await total(redis, keys.outbox) == 0


async def test_a_crash_between_the_end_and_the_removal_is_redone_by_the_sweep(
        engine: Engine, redis: Redis) -> None:
    await engine.sync(CANCEL_ON)
    engine.answer(lambda call: Completed("ok") if call.event["data"]["order"] == "o-1"
                  else waiter(call))
    lifecycle = engine.executor.lifecycle
    engine.executor.ingest.on_run_ended = None  # the process dies after each end's script
    (done,) = await engine.send({"order": "o-1"})
    (waiting,) = await engine.send({"order": "o-2"})
    await engine.run_until_idle()
    assert await engine.executor.ingest.cancel(waiting, "by hand")
    assert (await engine.run(done))["status"] == "Completed"
    assert await _stored_anywhere(redis, done) == []  # its listener went with its end
    assert len(await _stored_anywhere(redis, waiting)) == 2  # its wait and its listener
    assert await total(redis, keys.outbox) == 1
    # meanwhile the pauses of the ended run are harmless: the wait is consumed by its
    # event without resuming anything, the listener cancels nothing
    await engine.send({"order": "o-2"}, name=APPROVED)
    await engine.send({"order": "o-2"}, name=CANCELLED)
    await engine.run_until_idle()
    assert (await engine.run(waiting))["status"] == "Cancelled"
    assert (await engine.run(done))["status"] == "Completed"
    engine.executor.ingest.on_run_ended = lifecycle.run_ended
    assert await lifecycle.sweep(older_than_ms=0) == 1
    for run_id in (done, waiting):
        assert await _stored_anywhere(redis, run_id) == []
        assert not await redis.exists(keys.run_listeners(run_id))
    assert await total(redis, keys.outbox) == 0


async def test_timeout_items_written_before_addresses_still_fire(engine: Engine,
                                                                 redis: Redis) -> None:
    """Both older forms of a pause's timeout item: the hash's key in the payload, and
    (before typed payloads) `<key>|<id>` in `ref`."""
    await engine.sync({"id": "f"})
    engine.answer(waiter)
    runs = [(await engine.send({"order": order}))[0] for order in ("o-1", "o-2")]
    await engine.run_until_idle()
    for n, run_id in enumerate(runs):
        wait_id = f"{run_id}:{WAIT}"
        key = _bucket(APPROVED, f"o-{n + 1}", run_id)
        items = keys.queue_of(run_id).items
        item = orjson.loads(await redis.hget(items, f"{run_id}:t:{wait_id}"))  # type: ignore[arg-type]
        if n == 0:
            item["payload"] = {"pause_key": key, "pause_id": wait_id}
        else:
            item.pop("payload")
            item["ref"] = f"{key}|{wait_id}"
        await redis.hset(items, item["id"], orjson.dumps(item))  # type: ignore[misc]
        # and the member, as pause.lua wrote it then
        listeners = keys.run_listeners(run_id)
        await redis.delete(listeners)
        await redis.sadd(listeners, f"{key}|{wait_id}")  # type: ignore[misc]
    engine.clock.advance(11_000)
    await engine.run_until_idle()
    for run_id in runs:
        run: dict[str, Any] = await engine.run(run_id)
        assert run["status"] == "Completed" and run["output"] == {"resumed_by": None}
        assert await _stored_anywhere(redis, run_id) == []
        assert not await redis.exists(keys.run_listeners(run_id))


async def test_an_invoke_is_not_sent_for_a_caller_that_ended(engine: Engine) -> None:
    """A caller cancelled before its invoke's event went out: its pause is still there
    until its end is processed, so the event is held back by the caller's status."""
    await engine.sync({"id": "f"}, {"id": "g", "triggers": [{"event": "test/other"}]})
    engine.answer(lambda call: ops({"op": "InvokeFunction", "id": WAIT, "name": "inv",
                                    "opts": {"function_id": "g", "payload": {}}}))
    waits = engine.executor.worker.timers.waits
    held: list[EmitInvoke] = []

    async def hold(spec: EmitInvoke, now: int) -> None:
        held.append(spec)

    waits.emit_invoke = hold  # type: ignore[method-assign]
    engine.executor.ingest.on_run_ended = None  # its end's processing has not run yet
    (caller,) = await engine.send()
    await engine.run_until_idle()
    assert await engine.executor.ingest.cancel(caller, "by hand")
    del waits.emit_invoke
    (spec,) = held
    await waits.emit_invoke(spec, engine.clock())
    correlation = spec.data["_inngest"]["correlation_id"]
    assert await engine.executor.ingest.runs_of_event(f"{correlation}-invoke") == []
