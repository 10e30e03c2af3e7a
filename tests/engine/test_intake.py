"""Ingest: run ids derived from (event, function), so a retried ingest starts no second run;
a new run's first call handed straight to the local worker; the intake item (what an
event does to runs already there) written only when something may wait for the event; and
a run started away from its event's shard (its function's home) never lost."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from ulid import ULID

from executor import flow, ingest_chunks, keys
from executor.driver import Completed, Outcome
from executor.events import IncomingEvent
from executor.queue import Intake
from executor.service import Executor

from .harness import Call, Engine, ops, total


def _local_worker(engine: Engine) -> Executor:
    """The engine's executor with ingest handing new runs' first calls to its worker (as
    the service wires them when the process runs a worker)."""
    executor = engine.executor
    executor.ingest.claim = executor.worker.claim
    executor.ingest.unclaim = executor.worker.unclaim
    executor.ingest.adopt = executor.worker.adopt
    return executor


async def _three_slots_of_busy_calls(engine: Engine) -> tuple[Executor, Busy]:
    """A local worker of 3 slots, function `f` synced, and an app whose calls wait."""
    executor = _local_worker(engine)
    executor.worker.slots = 3
    await engine.sync({"id": "f"})
    busy = Busy()
    engine.answer(busy.call)
    return executor, busy


class Busy:
    """An app whose calls all wait for `release`, counting the most running at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = self.most = 0

    async def call(self, call: Call) -> Outcome:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.release.wait()
        self.running -= 1
        return Completed("done")


async def test_a_retried_ingest_starts_no_second_run(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f"}, {"id": "g"})

    def event() -> IncomingEvent:
        return IncomingEvent(engine.event_id(1), {"name": "test/go", "data": {}, "id": "",
                                                  "ts": engine.clock(), "user": {}}, "")

    first = await engine.executor.ingest.accept([event()])
    assert len(first) == 2
    # even were the event's own record gone, the runs' ids are the same: none is created twice
    await redis.delete(keys.event(engine.event_id(1)))
    assert await engine.executor.ingest.accept([event()]) == []
    assert await total(redis, keys.runs) == 2
    # one run per function, and another event gets other runs
    assert len(set(first)) == 2
    assert set(first).isdisjoint(await engine.send())


async def test_many_events_at_once_hand_the_worker_no_more_calls_than_its_slots(
        engine: Engine) -> None:
    # each ingest holds the slots its script may fill from before the script until it adopts
    # the calls: events accepted together cannot each count the same free slots
    executor, busy = await _three_slots_of_busy_calls(engine)
    run_ids = [r for ids in await asyncio.gather(*(engine.send({"i": i}) for i in range(12)))
               for r in ids]
    for _ in range(20):
        await asyncio.sleep(0)
    assert busy.most == 3 and executor.worker.free_slots() == 0
    busy.release.set()
    await engine.run_until_idle()  # the rest were queued: the worker leases them later
    assert busy.most == 3
    for run_id in run_ids:
        assert (await engine.run(run_id))["status"] == "Completed"


async def test_one_request_stored_in_several_pieces_hands_over_no_more_than_its_slots(
        engine: Engine) -> None:
    # a request too large for one script call goes in pieces: together they hand over at
    # most the slots held for them
    executor, busy = await _three_slots_of_busy_calls(engine)
    events = [IncomingEvent(engine.event_id(i + 1), {"name": "test/go", "data": {"i": i},
                                                     "id": "", "ts": engine.clock(), "user": {}},
                            "") for i in range(2 * ingest_chunks.MAX_EVENTS + 10)]
    run_ids = await executor.ingest.accept(events)
    for _ in range(20):
        await asyncio.sleep(0)
    assert busy.most == 3
    busy.release.set()
    await engine.run_until_idle()
    assert busy.most == 3 and len(run_ids) == len(events)


async def test_a_new_runs_first_call_is_handed_to_the_local_worker(engine: Engine,
                                                                   redis: Redis) -> None:
    executor = _local_worker(engine)
    await engine.sync({"id": "f"})
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(call: Call) -> Outcome:
        started.set()
        await release.wait()
        return Completed("done")

    engine.answer(slow)
    reads: list[list[str]] = []
    load_many = executor.state.load_many

    async def counted(run_ids: list[str]) -> Any:
        reads.append(run_ids)
        return await load_many(run_ids)

    executor.state.load_many = counted  # type: ignore[method-assign]
    (run_id,) = await engine.send()
    # the call starts with no leasing loop running: the item went from ingest to the worker,
    # with the state the script wrote (not read back)
    await asyncio.wait_for(started.wait(), 5)
    assert [c.run_id for c in engine.driver.calls] == [run_id]
    assert reads == []
    assert engine.driver.calls[0].event["name"] == "test/go"
    assert await redis.zscore(keys.queue_of(run_id).ready, f"{run_id}:1") is None
    assert await redis.zscore(keys.queue_of(run_id).leased, f"{run_id}:1") is not None
    release.set()
    await executor.worker.drain()
    assert (await engine.run(run_id))["status"] == "Completed"

    # a worker with no room leaves the first call in the queue
    executor.worker.slots = 0
    (queued,) = await engine.send()
    assert await redis.zscore(keys.queue_of(queued).ready, f"{queued}:1") is not None
    assert len(engine.driver.calls) == 1


async def test_the_intake_is_stored_only_when_something_waits(engine: Engine,
                                                              redis: Redis) -> None:
    await engine.sync({"id": "f"})
    intakes: list[Intake] = []
    follow_up = engine.executor.ingest.follow_up

    async def spy(intake: Intake, events: Any = None) -> None:
        intakes.append(intake)
        await follow_up(intake, events)

    engine.executor.ingest.follow_up = spy  # type: ignore[method-assign]
    await engine.send(name="approval/decided")  # nothing waits for it
    assert intakes == []

    def answer(call: Call) -> Outcome:
        if "w" * 40 in call.steps:
            return Completed(call.steps["w" * 40])
        return ops({"op": "WaitForEvent", "id": "w" * 40, "name": "approval",
                    "opts": {"event": "approval/decided", "timeout": "1h"}})

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    await engine.send({"ok": True}, name="approval/decided")
    assert len(intakes) == 1 and len(intakes[0].events) == 1
    # done and dropped by the process that accepted the event: no intake item is left
    items = [i for s in keys.shards() for i in await redis.hkeys(keys.queue(s).items)]
    assert not [i for i in items if i.endswith(b":intake")]
    await engine.run_until_idle()
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"]["data"] == {"ok": True}


async def test_an_event_after_another_process_synced_starts_the_new_functions(
        engine: Engine, redis: Redis) -> None:
    """The ingest script checks the function set the runs were planned with (no read of
    the registry version per event): a sync by another process makes it write nothing, and
    the event is planned again with the new set."""
    from executor.registry import Registry

    await engine.sync({"id": "f"})
    assert len(await engine.send()) == 1
    other = Registry(redis)  # another executor process syncs a second function
    body = {"appName": "app", "url": "http://app.test/api/inngest", "functions": [
        {"id": fn, "name": fn, "triggers": [{"event": "test/go"}],
         "steps": {"step": {"id": "step", "name": "step", "runtime": {
             "type": "http", "url": f"http://app.test/api/inngest?fnId={fn}"}}}}
        for fn in ("f", "g")]}
    await other.sync(body, orjson.dumps(body), engine.clock())
    stale = engine.executor.registry.version
    created = await engine.send()
    assert len(created) == 2 and engine.executor.registry.version != stale
    functions = {(await engine.run(r))["function_id"] for r in created}
    assert functions == {"f", "g"}
    assert await total(redis, keys.runs) == 3  # nothing written twice by the stale attempt


async def test_a_run_started_away_from_its_event_survives_a_crash_in_between(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function whose runs share flow-control state starts its runs in its home shard,
    after its event was stored in its own: the event's intake item names the run meanwhile,
    so a process dying between the two leaves it to a worker, which starts it once."""
    if keys.shard_count() == 1:
        pytest.skip("one shard: every run is stored with its event")
    await engine.sync({"id": "f", "concurrency": [{"limit": 2}]})
    ingest = engine.executor.ingest
    home = flow.home_shard("f", engine.executor.registry.functions["f"].flow)
    assert home is not None
    stored_alone = ingest._store

    async def dies_before_the_home_shard(shard: int, piece: dict[str, Any],
                                         *args: Any) -> Any:
        if shard == home and piece["events"] == []:
            raise ConnectionError("the process died")
        return await stored_alone(shard, piece, *args)

    monkeypatch.setattr(ingest, "_store", dies_before_the_home_shard)
    event_id = keys.with_shard(str(ULID()), (home + 1) % keys.shard_count())
    event = IncomingEvent(event_id, {"name": "test/go", "data": {}, "id": "",
                                     "ts": engine.clock(), "user": {}}, "")
    with pytest.raises(ConnectionError):
        await ingest.accept([event])
    assert await ingest.runs_of_event(event_id) == []  # the event is stored, its run not yet
    assert await redis.exists(keys.event(event_id))

    monkeypatch.undo()
    engine.clock.advance(ingest.lease_ms + 1)  # the intake item's lease runs out
    assert await engine.executor.queue.reap(engine.clock()) == 1
    await engine.run_until_idle()
    (run_id,) = await ingest.runs_of_event(event_id)
    assert keys.shard_of(run_id) == home
    assert (await engine.run(run_id))["status"] == "Completed"
    await ingest.follow_up(Intake([], [], [[event_id, "f"]]))  # done again: nothing new
    assert await ingest.runs_of_event(event_id) == [run_id]


async def test_a_senders_repeated_event_id_is_found_in_any_store(engine: Engine,
                                                               redis: Redis) -> None:
    """An event with a sender's id is stored in the shard of the key that remembers that id
    (on a cluster a script may touch one shard only): a repeat, whatever internal id it was
    given, is found there, stores nothing and starts nothing, not even the runs a function
    starts in its home shard."""
    await engine.sync({"id": "f"}, {"id": "limited", "concurrency": [{"limit": 1}]})

    def sent(internal_id: str) -> IncomingEvent:
        return IncomingEvent(internal_id, {"name": "test/go", "data": {}, "id": "order-7",
                                           "ts": engine.clock(), "user": {}}, "order-7")

    first = sent(engine.event_id(1))
    created = await engine.executor.ingest.accept([first])
    assert len(created) == 2
    assert keys.shard_of(first.internal_id) == keys.shard_by_hash("order-7")
    assert await redis.get(keys.event_dedupe("order-7")) == first.internal_id.encode()
    for n in range(2, 8):  # retries that got other internal ids, one per shard or more
        again = sent(engine.event_id(n))
        assert await engine.executor.ingest.accept([again]) == []
        assert again.internal_id == first.internal_id  # the API answers the first id
    assert await total(redis, keys.runs) == 2


async def test_a_shards_registry_copy_left_behind_catches_up(engine: Engine,
                                                            redis: Redis) -> None:
    """Each shard's ingest checks a copy of the registry version written after each sync;
    a copy left behind (two syncs writing out of order, a process dying between the counter
    and the copies) is caught up by the next ingest planned with the newer version, not
    taken for a stale plan forever."""
    await engine.sync({"id": "f"})
    version = engine.executor.registry.version
    assert version is not None
    for shard in keys.shards():
        if keys.registry_version(shard) != keys.REGISTRY_VERSION:  # the copies
            await redis.set(keys.registry_version(shard), version - 1)
    for _ in range(3 * keys.shard_count()):  # events land in every shard
        assert len(await engine.send()) == 1
    for shard in keys.shards():
        assert int(await redis.get(keys.registry_version(shard)) or 0) == version
