"""Issue 11, point 5: pauses at volume. An event reads only the pauses of its own
correlation value (every other pause is made unreadable here, so reading one fails the
test), and waits, cancelOn, timeouts, look-back scans, end-of-run clean-up and pauses made
before the index all still work. Consuming a pause stays exactly-once when two executors
match the same event at once."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from executor import keys, pause_index
from executor.driver import Completed, Outcome
from executor.events import IncomingEvent

from .harness import Call, Engine, ops

WAIT = "w" * 40
NAP = "n" * 40
APPROVED = "shop/approved"
CANCELLED = "shop/cancelled"
MATCH = "async.data.order == event.data.order"


def waiter(expression: str = MATCH, timeout: str = "1h", lookback: str | None = None,
           event: str = APPROVED) -> Any:
    def answer(call: Call) -> Outcome:
        if WAIT in call.steps:
            return Completed({"resumed_by": call.steps[WAIT]})
        opts = {"event": event, "timeout": timeout, "if": expression}
        if lookback:
            opts["lookback"] = lookback
        return ops({"op": "WaitForEvent", "id": WAIT, "name": "approval", "opts": opts})
    return answer


def sleeper(call: Call) -> Outcome:
    return ops({"op": "Sleep", "id": NAP, "name": "nap", "opts": {"duration": "1h"}})


async def _pause_hashes(redis: Redis) -> list[str]:
    found = []
    for shard in keys.shards():
        async for raw in redis.scan_iter(match=f"{keys.prefix(shard)}:pause*"):
            key = raw.decode()
            if await redis.type(key) == b"hash":
                found.append(key)
    return found


async def _unindexed(redis: Redis, name: str) -> dict[bytes, bytes]:
    """The pauses of `name` stored unindexed, in every shard."""
    found: dict[bytes, bytes] = {}
    for shard in keys.shards():
        found.update(await redis.hgetall(keys.pauses(name, shard)))  # type: ignore[misc]
    return found


async def _make_unreadable_all_but(redis: Redis, keep: str) -> int:
    """Overwrite every stored pause but the one with id `keep` with bytes that are not
    JSON: matching an event fails if it reads any of them."""
    spoiled = 0
    for key in await _pause_hashes(redis):
        for field in await redis.hkeys(key):  # type: ignore[misc]
            if field.decode() != keep:
                await redis.hset(key, field, b"\xff not a pause")  # type: ignore[misc]
                spoiled += 1
    return spoiled


async def _start(engine: Engine, orders: list[str]) -> dict[str, str]:
    runs = {}
    for order in orders:
        (runs[order],) = await engine.send({"order": order})
    await engine.run_until_idle()
    return runs


async def test_an_event_reads_only_the_bucket_of_its_value(engine: Engine,
                                                           redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(waiter())
    runs = await _start(engine, [f"o-{i}" for i in range(20)])
    assert await _unindexed(redis, APPROVED) == {}  # all indexed
    bucket = keys.pause_bucket(APPROVED, "data.order", '"o-7"', keys.shard_of(runs["o-7"]))
    stored = orjson.loads(await redis.hget(bucket, f"{runs['o-7']}:{WAIT}"))  # type: ignore[misc]
    assert stored["expr"] == 'async.data.order == "o-7"'
    assert "event" not in stored  # the trigger is written in, not copied
    assert await _make_unreadable_all_but(redis, f"{runs['o-7']}:{WAIT}") == 19
    await engine.send({"order": "o-7", "note": "yes"}, name=APPROVED)
    await engine.run_until_idle()
    run = await engine.run(runs["o-7"])
    assert run["status"] == "Completed"
    assert run["output"]["resumed_by"]["data"]["note"] == "yes"
    assert (await engine.run(runs["o-8"]))["status"] == "Running"
    assert not await redis.exists(bucket)  # consumed: the bucket is gone with it


async def test_cancel_on_reads_only_its_bucket(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f", "cancel": [{"event": CANCELLED, "if": MATCH}]})
    engine.answer(sleeper)
    runs = await _start(engine, [f"o-{i}" for i in range(10)])
    listener = f"{runs['o-3']}:cancel:0"
    assert await redis.hexists(  # type: ignore[misc]
        keys.pause_bucket(CANCELLED, "data.order", '"o-3"', keys.shard_of(runs["o-3"])),
        listener)
    await _make_unreadable_all_but(redis, listener)
    await engine.send({"order": "o-3"}, name=CANCELLED)
    assert (await engine.run(runs["o-3"]))["status"] == "Cancelled"
    assert (await engine.run(runs["o-4"]))["status"] == "Running"


async def test_a_function_stored_before_the_index_registers_its_cancel_paths(
        engine: Engine, redis: Redis) -> None:
    """A listener is stored in its bucket by the ingest script; the path must be in the
    name's path set before that, even for a function synced before the set existed."""
    await engine.sync({"id": "f", "cancel": [{"event": CANCELLED, "if": MATCH}]})
    for shard in keys.shards():  # as an older executor left it
        await redis.delete(keys.pause_paths(CANCELLED, shard))
    fresh = Engine(redis, sleeper)  # another process: loads the function from Redis
    await fresh.executor.scripts.load_all()
    (run_id,) = await fresh.send({"order": "o-1"})
    paths = await redis.smembers(keys.pause_paths(CANCELLED, keys.shard_of(run_id)))  # type: ignore[misc]
    assert paths - {pause_index.UNINDEXED.encode()} == {b"data.order"}
    await fresh.send({"order": "o-1"}, name=CANCELLED)
    assert (await fresh.run(run_id))["status"] == "Cancelled"
    await fresh.executor.driver.close()


async def test_a_timed_out_wait_leaves_its_bucket(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(waiter(timeout="10s"))
    runs = await _start(engine, ["o-1"])
    bucket = keys.pause_bucket(APPROVED, "data.order", '"o-1"', keys.shard_of(runs["o-1"]))
    assert await redis.exists(bucket)
    engine.clock.advance(11_000)
    await engine.run_until_idle()
    run = await engine.run(runs["o-1"])
    assert run["status"] == "Completed" and run["output"] == {"resumed_by": None}
    assert not await redis.exists(bucket)
    assert not await redis.exists(keys.run_listeners(runs["o-1"]))


async def test_ending_a_run_removes_its_pauses_from_their_buckets(engine: Engine,
                                                                  redis: Redis) -> None:
    await engine.sync({"id": "f", "cancel": [{"event": CANCELLED, "if": MATCH}]})
    engine.answer(waiter())
    runs = await _start(engine, ["o-1"])
    assert len(await _pause_hashes(redis)) == 2  # the wait's bucket and the listener's
    assert await engine.executor.ingest.cancel(runs["o-1"], "by hand")
    assert await _pause_hashes(redis) == []


async def test_a_wait_finds_an_earlier_event_through_its_bucket(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(waiter(lookback="1m"))
    await engine.send({"order": "o-2"}, name=APPROVED)
    await engine.send({"order": "o-1", "early": True}, name=APPROVED)
    runs = await _start(engine, ["o-1"])
    run = await engine.run(runs["o-1"])
    assert run["status"] == "Completed"
    assert run["output"]["resumed_by"]["data"]["early"] is True


async def test_unindexable_and_uninterpolated_waits_still_match(engine: Engine,
                                                                redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(waiter("async.data.order != event.data.order"))
    (other,) = (await _start(engine, ["o-1"])).values()
    engine.answer(waiter("async.data.items.exists(event, event == 1)"))
    (loop,) = (await _start(engine, ["o-2"])).values()
    stored = {orjson.loads(v)["run_id"]: orjson.loads(v)
              for v in (await _unindexed(redis, APPROVED)).values()}
    assert stored[other]["expr"] == 'async.data.order != "o-1"'
    assert "event" in stored[loop]  # kept with its trigger: `event` is the loop variable
    await engine.send({"order": "o-2", "items": [1]}, name=APPROVED)
    await engine.run_until_idle()
    assert (await engine.run(other))["status"] == "Completed"
    assert (await engine.run(loop))["status"] == "Completed"


async def test_pauses_made_before_the_index_are_still_matched(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade strands nothing: pauses stored the old way (the whole expression and the
    trigger, in the name's hash; named by their hash's key in the runs' listeners sets and
    in their timeout and look-back items) are read and resumed, cancelled and timed out,
    and removed with their runs."""
    def legacy(name: str, expression: str | None, trigger: dict[str, Any]) -> Any:
        return pause_index.unindexed(name), expression, trigger if expression else None, None

    monkeypatch.setattr(pause_index, "place", legacy)
    monkeypatch.setattr(pause_index, "PauseRef", LegacyRef)
    await engine.sync({"id": "f", "cancel": [{"event": CANCELLED, "if": MATCH}]})
    engine.answer(waiter(timeout="10s"))
    runs = await _start(engine, ["o-1", "o-2", "o-3"])
    assert len(await _unindexed(redis, APPROVED)) == 3
    monkeypatch.undo()
    for run_id in runs.values():  # written as before addresses
        members = await redis.smembers(keys.run_listeners(run_id))  # type: ignore[misc]
        assert len(members) == 2 and all(m.startswith(b"il:") for m in members)
        timeout = await redis.hget(keys.queue_of(run_id).items, f"{run_id}:t:{run_id}:{WAIT}")
        assert orjson.loads(timeout)["payload"]["pause_key"] == keys.pauses(  # type: ignore[arg-type]
            APPROVED, keys.shard_of(run_id))
    await engine.send({"order": "o-1"}, name=APPROVED)
    await engine.send({"order": "o-2"}, name=CANCELLED)
    engine.clock.advance(11_000)
    await engine.run_until_idle()
    assert (await engine.run(runs["o-1"]))["output"]["resumed_by"]["data"]["order"] == "o-1"
    assert (await engine.run(runs["o-2"]))["status"] == "Cancelled"
    assert (await engine.run(runs["o-3"]))["output"] == {"resumed_by": None}
    assert await _pause_hashes(redis) == []
    for run_id in runs.values():
        assert not await redis.exists(keys.run_listeners(run_id))


@dataclasses.dataclass(frozen=True)
class LegacyRef(pause_index.PauseRef):
    """A pause named as before addresses: by its hash's key."""

    def __post_init__(self) -> None:
        if not self.legacy_key:
            object.__setattr__(self, "legacy_key", keys.pause_hash(
                self.address, keys.shard_of(self.id)))
            object.__setattr__(self, "address", ())


async def test_a_wait_for_a_function_finishing_keeps_that_event(engine: Engine) -> None:
    """`inngest/function.finished` is stored only when something listens: an indexed wait
    for it counts, though it is not in the name's own hash."""
    finished = "inngest/function.finished"
    await engine.sync({"id": "f"}, {"id": "g", "triggers": [{"event": "test/other"}]})

    def answer(call: Call) -> Outcome:
        if call.event["name"] == "test/other":
            return Completed("g done")
        return waiter("async.data.event.data.order == event.data.order",
                      event=finished)(call)

    engine.answer(answer)
    runs = await _start(engine, ["o-1"])
    await engine.send({"order": "o-1"}, name="test/other")
    await engine.run_until_idle()
    run = await engine.run(runs["o-1"])
    assert run["status"] == "Completed"
    assert run["output"]["resumed_by"]["data"]["result"] == "g done"


async def test_two_executors_matching_one_event_resume_the_run_once(engine: Engine,
                                                                    redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(waiter())
    runs = await _start(engine, ["o-1", "o-2"])
    other = Engine(redis, waiter())
    await other.executor.scripts.load_all()
    event = IncomingEvent("ev-approve", {"name": APPROVED, "data": {"order": "o-1"},
                                         "id": "", "ts": engine.clock(), "user": {}}, "")
    await engine.executor.ingest.accept([event])  # stored and matched once here
    # ...and again, at the same time, by both processes (a retried request, a slow peer)
    await asyncio.gather(engine.executor.ingest.pauses.match([event]),
                         other.executor.ingest.pauses.match([event]),
                         engine.executor.ingest.pauses.match([event]))
    await engine.run_until_idle()
    await other.run_until_idle()
    resumed = [c for e in (engine, other) for c in e.driver.calls
               if c.run_id == runs["o-1"] and WAIT in c.steps]
    assert len(resumed) == 1
    links = keys.event_resumed("ev-approve", keys.shard_of(runs["o-1"]))
    assert await redis.lrange(links, 0, -1) == [runs["o-1"].encode()]  # type: ignore[misc]
    assert (await engine.run(runs["o-2"]))["status"] == "Running"
    await other.executor.driver.close()
