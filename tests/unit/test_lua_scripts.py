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

from executor import keys, lifecycle, pause_index
from executor.heartbeats import call_id_of
from executor.ingest import script_args
from executor.pause_index import PauseRef
from executor.queue import Queue, QueueItem
from executor.scripts import STRICT_ENV, Scripts
from executor.state import RunState
from executor.step_record import StepRecord

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
            pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
        client = Redis.from_url(real_redis.url)
        await client.flushdb()
    yield client
    await client.aclose()


async def _enqueue(redis: Redis, scripts: Scripts, run_id: str = "r1", due: int = NOW) -> None:
    item = {"run_id": run_id, "fn_id": "f", "step_id": "step", "attempt": 0, "max_attempts": 2}
    payload = {"now": NOW, "events": [], "runs": [{
        "run_key": keys.run(run_id), "runs_key": keys.event_runs("e", 0), "fn_runs_key": keys.runs_of_function("f", 0), "idem_keys": [],
        "run_id": run_id, "fields": {"status": "Running", "run_id": run_id},
        "item": item,
        "due": due}]}
    await scripts("ingest", *script_args(0, payload))


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
    assert await queue.renew(item, token, NOW, NOW + 2000) is True
    assert await queue.renew(item, "someone-else", NOW, NOW + 2000) is False
    assert await queue.reap(NOW + 1500) == 0  # renewed: not expired yet
    assert await queue.reap(NOW + 2500) == 1
    assert await queue.renew(item, token, NOW + 2500, NOW + 9000) is False  # reaped: lease gone
    again, _, _ = await queue.lease(NOW + 2500, 1000, 10)
    assert [i.id for i in again] == [item.id]


async def _enqueue_limited(redis: Redis, scripts: Scripts, run_id: str, slot: dict[str, Any]) -> None:
    """A run whose calls take one concurrency slot (`ck`), as ingest writes it."""
    item = {"run_id": run_id, "fn_id": "f", "step_id": "step", "attempt": 0, "max_attempts": 2,
            "ck": [slot]}
    payload = {"now": NOW, "events": [], "runs": [{
        "run_key": keys.run(run_id), "runs_key": keys.event_runs("e", 0),
        "fn_runs_key": keys.runs_of_function("f", 0), "idem_keys": [], "run_id": run_id,
        "fields": {"status": "Running", "run_id": run_id}, "item": item, "due": NOW}]}
    await scripts("ingest", *script_args(0, payload))


async def test_late_renewal_reasserts_or_forfeits_its_slot(redis: Redis) -> None:
    """A renewal that comes after lease.lua trimmed the call's slot entry puts it back when
    the slot has room, and forfeits the lease when another call took the room: the slot never
    counts fewer holders than are running (before, `ZADD XX` let limit + 1 run)."""
    scripts = Scripts(redis)
    queue = Queue(redis, scripts)
    name = keys.concurrency_slot("f", "", "")
    slot = {"n": name, "limit": 1, "label": "concurrency limit 1"}
    holders, _ = keys.slot_keys(name, 0)
    await _enqueue_limited(redis, scripts, "r1", slot)
    (a,), token_a, _ = await queue.lease(NOW, 1000, 10)
    # the slot entry expired (the renewal is late) but nobody took the room: re-asserted
    await redis.zremrangebyscore(holders, "-inf", NOW + 1000)
    assert await queue.renew(a, token_a, NOW + 1200, NOW + 3000) is True
    assert await redis.zscore(holders, a.id) == NOW + 3000
    # now expired again and another run's call takes the slot before the late renewal
    await _enqueue_limited(redis, scripts, "r2", slot)
    (b,), _, _ = await queue.lease(NOW + 3500, 1000, 10)
    assert b.run_id == "r2"
    assert await redis.zrange(holders, 0, -1) == [b.id.encode()]
    assert await queue.renew(a, token_a, NOW + 3600, NOW + 6000) is False
    # forfeited: the slot still counts one holder, and r1's item is ready again
    assert await redis.zrange(holders, 0, -1) == [b.id.encode()]
    assert await redis.zscore(keys.queue(0).ready, a.id) is not None
    assert await redis.hget(keys.queue(0).leases, a.id) is None


async def test_reaping_a_call_frees_its_slot_for_the_one_waiting(redis: Redis) -> None:
    """The reaper puts a dead worker's call back and frees its concurrency slot, so the call
    the slot held back competes again: reap.lua is given the slot's keys by name (a second
    round naming them), never reading a key out of the item."""
    scripts = Scripts(redis)
    queue = Queue(redis, scripts)
    name = keys.concurrency_slot("f", "", "")
    holders, waiting = keys.slot_keys(name, 0)
    slot = {"n": name, "limit": 1, "label": "concurrency limit 1"}
    await _enqueue_limited(redis, scripts, "r1", slot)
    await _enqueue_limited(redis, scripts, "r2", slot)
    (a,), _, _ = await queue.lease(NOW, 1000, 10)  # r2's call waits for the slot
    assert await redis.zrange(holders, 0, -1) == [a.id.encode()]
    assert await redis.zcard(waiting) == 1
    # the waiting set names the slot, not its key
    assert await redis.smembers(keys.concurrency_waiting_keys(0)) == {name.encode()}
    assert await redis.hget(keys.run("r2"), "waiting_reason") == b"concurrency limit 1"
    assert await queue.reap(NOW + 1500) == 1
    assert await redis.zcard(holders) == 0 and await redis.zcard(waiting) == 0
    again, _, _ = await queue.lease(NOW + 1500, 1000, 10)
    # the waiter is back at its own due time, before the reaped call: it takes the slot
    assert [i.run_id for i in again] == ["r2"]
    assert await redis.zrange(holders, 0, -1) == [again[0].id.encode()]


async def test_items_written_before_slots_had_names_still_take_and_free_them(
        redis: Redis) -> None:
    """An item stored by an older executor names its slot by key (`key`, `wait`): it is
    leased, held back and released as before the upgrade."""
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    holders, waiting = keys.slot_keys(keys.concurrency_slot("f", "", ""), 0)
    slot = {"key": holders, "wait": waiting, "limit": 1, "label": "concurrency limit 1"}
    await _enqueue_limited(redis, scripts, "r1", slot)
    await _enqueue_limited(redis, scripts, "r2", slot)
    (a,), token, _ = await queue.lease(NOW, 1000, 10)
    assert await redis.zrange(holders, 0, -1) == [a.id.encode()]
    assert await redis.zcard(waiting) == 1
    assert (await state.finish(a, token, NOW, "Completed", 1)).code == 1
    assert await redis.zcard(holders) == 0  # freed, and the waiting call is ready again
    (b,), _, _ = await queue.lease(NOW + 10, 1000, 10)
    assert b.run_id != a.run_id


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
    assert await state.retry(item, "stale", NOW + 100, "err") == 0
    assert await state.retry(item, token, NOW + 100, "err") == 1
    (again,), token2, _ = await queue.lease(NOW + 100, 1000, 10)
    assert again.attempt == 1
    assert (await state.finish(again, "stale", NOW, "Completed", 1)).code == 0
    assert (await state.finish(again, token2, NOW, "Completed", 1)).code == 1
    assert await redis.hget(keys.run("r1"), "status") == b"Completed"
    # a second finish keeps the first status
    await _enqueue(redis, scripts, "r1")  # run exists: ingest skips it
    fake = QueueItem(id="r1:x", run_id="r1", fn_id="f")
    assert (await state.finish(fake, "", NOW, "Failed", 0)).code == 2
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
    assert (await state.finish(item, token, NOW, "Failed", sent,
                         event_error=normalized)).code == 1
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
            "run_key": keys.run(run_id), "runs_key": keys.event_runs("e", 0), "fn_runs_key": keys.runs_of_function("f", 0),
            "idem_keys": [[keys.idempotency("f", "order-1", 0), 60, "idempotency key 'order-1' already used"]],
            "run_id": run_id, "fields": {"status": "Running"}, "item": item, "due": NOW}]}
        out = orjson.loads(await scripts("ingest", *script_args(0, payload)))
        return list(out["created"])

    assert await ingest("a") == ["a"]
    # the drop leaves a trace: a Skipped run naming the run that holds the key
    assert await ingest("b") == ["b"]
    assert await redis.hget(keys.run("b"), "status") == b"Skipped"
    reason = orjson.loads(await redis.hget(keys.run("b"), "output"))["reason"]
    assert "order-1" in reason and "(run a)" in reason
    assert await redis.zscore(keys.runs_running(0), "a") is not None
    assert await redis.zscore(keys.runs_running(0), "b") is None
    assert not await redis.hexists(keys.queue(0).items, "b:1")


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
    """The end leaves the pauses to the outbox's processing (unlisten.lua), which reads the
    members of either form: by address, and `<key>|<id>` as written before addresses."""
    scripts = Scripts(redis)
    await _enqueue(redis, scripts)
    old_key = keys.pauses("approval|decided", 0)
    new = PauseRef("r1:n", pause_index.bucket("a|b", "data.id", '"x|y"'))
    await redis.hset(old_key, "r1:h", "{}")
    await redis.hset(new.key, "r1:n", "{}")
    await redis.sadd(keys.run_listeners("r1"), f"{old_key}|r1:h", new.member)
    state = RunState(redis, scripts)
    assert await state.unlisten("r1") == -1  # a Running run's pauses are live
    assert await state.cancel("r1", NOW, {"message": "stop"}) == 1
    assert await redis.hget(old_key, "r1:h") == b"{}"  # not in cancel.lua's KEYS
    assert await redis.zscore(keys.outbox(0), "r1") is not None  # the outbox will
    unreadable = b'["r1:x","b","only a name"]'  # no writer makes one: left, not in the way
    await redis.sadd(keys.run_listeners("r1"), unreadable)
    assert await state.unlisten("r1") == 2
    assert not await redis.exists(old_key, new.key)
    assert await redis.smembers(keys.run_listeners("r1")) == {unreadable}
    await redis.srem(keys.run_listeners("r1"), unreadable)
    assert await state.unlisten("r1") == 0  # done again (the outbox sweep): nothing more


def _strict(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> Scripts:
    """The scripts behind the strict-keys guard (a command on a key not in KEYS fails)."""
    with monkeypatch.context() as env:
        env.setenv(STRICT_ENV, "1")
        return Scripts(redis)


async def test_the_pause_scripts_name_every_key_they_touch(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """pause, resume, finish, cancel, strand and unlisten under the strict-keys guard, with
    pauses in buckets and cancel listeners (the runs are set up by the unguarded scripts)."""
    lax = Scripts(redis)
    state = RunState(redis, _strict(redis, monkeypatch))

    async def listening(run_id: str) -> PauseRef:
        listener = PauseRef(f"{run_id}:cancel:0", pause_index.bucket("stop", "data.id", '"1"'))
        await redis.hset(listener.key, listener.id, "{}")  # as ingest.lua stores it
        await redis.sadd(keys.run_listeners(run_id), listener.member)
        return listener

    async def waiting(run_id: str) -> PauseRef:
        item, token = await _leased(redis, lax, run_id)
        ref = PauseRef(f"{run_id}:h", pause_index.bucket("ev", "data.id", '"1"'))
        pause = {"id": ref.id, "run_id": run_id, "fn_id": "f", "step": "h"}
        assert await state.pause(item, token, NOW, ref=ref, pause=pause,
                                 timeout_due=NOW + 1000, record=_record(),
                                 indexed=(keys.pause_paths("ev", 0), "data.id")) == 1
        return ref

    # finish: a completed run nothing waits for, but with a listener, is not ended quietly
    listener = await listening("r1")
    wait = await waiting("r1")
    stored = orjson.loads(await redis.hget(wait.key, wait.id))
    assert await state.resume(wait, stored, b"{}", NOW, _record()) == 1
    (item,), token, _ = await Queue(redis, lax).lease(NOW, 1000, 10)
    assert (await state.finish(item, token, NOW, "Completed", "ok", unheard=0)).code == 1
    assert await redis.zscore(keys.outbox(0), "r1") is not None
    assert await redis.hexists(listener.key, listener.id)
    assert await state.unlisten("r1") == 1
    assert not await redis.exists(listener.key, keys.run_listeners("r1"))
    # cancel
    listener = await listening("r2")
    wait = await waiting("r2")
    assert await state.cancel("r2", NOW, {"message": "stop"}) == 1
    assert await state.unlisten("r2") == 2
    assert not await redis.exists(listener.key, wait.key, keys.run_listeners("r2"))
    # strand: a cancel listener alone does not keep a run from being stranded
    listener = await listening("r3")
    await _enqueue(redis, lax, "r3")
    await redis.hdel(keys.queue(0).items, "r3:1")
    assert await state.fail_if_stranded("r3", NOW, {"message": "stuck"}) == 1
    assert await state.unlisten("r3") == 1
    assert not await redis.exists(listener.key, keys.run_listeners("r3"))


async def test_resuming_a_pause_removes_its_member_of_either_form(redis: Redis) -> None:
    """A pause stored before addresses, found by its address (an event reads its hash):
    its member `<key>|<id>` leaves the listeners set too, or the run would look parked."""
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    await _enqueue(redis, scripts)
    ref = _ref("r1:h")
    pause = {"id": ref.id, "run_id": "r1", "fn_id": "f", "step": "h"}
    await redis.hset(ref.key, ref.id, orjson.dumps(pause))
    await redis.sadd(keys.run_listeners("r1"), f"{ref.key}|{ref.id}")
    assert await state.resume(ref, pause, b"{}", NOW, _record()) == 1
    assert not await redis.exists(keys.run_listeners("r1"))


def test_a_member_names_its_pause_in_either_form() -> None:
    ref = PauseRef("r1:h", pause_index.bucket("a|b", "data.x", '"|"'))
    assert PauseRef.of_member(ref.member.encode()) == ref
    assert ref.key == keys.pause_bucket("a|b", "data.x", '"|"', 0)
    old = PauseRef.of_member(f"{keys.pauses('a|b', 0)}|r1:h")
    assert (old.id, old.key, old.member) == ("r1:h", keys.pauses("a|b", 0),
                                             f"{keys.pauses('a|b', 0)}|r1:h")
    invoke = PauseRef("r1.h", pause_index.INVOKE)
    assert PauseRef.of_member(invoke.member).key == keys.pauses_by_correlation(0)
    with pytest.raises(ValueError):
        keys.pause_hash(("b", "only a name"), 0)


# -- the return codes the tests above leave out: every code of every script is pinned -------
async def _leased(redis: Redis, scripts: Scripts, run_id: str = "r1") -> tuple[QueueItem, str]:
    await _enqueue(redis, scripts, run_id)
    items, token, _ = await Queue(redis, scripts).lease(NOW, 1000, 10)
    return next(i for i in items if i.run_id == run_id), token


def _record(step: str = "h") -> StepRecord:
    return StepRecord(step, step, "StepRun", "Completed", 1, NOW, NOW)


def _ref(pause_id: str, event: str = "x") -> PauseRef:
    """An unindexed pause of `event`."""
    return PauseRef(pause_id, pause_index.unindexed(event))


async def test_scripts_on_an_ended_run_drop_the_item_and_write_nothing(redis: Redis) -> None:
    """complete {3}, retry 3, plan -3, pause 3: a cancel landed while the call was in flight."""
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    for run_id, act in (
        ("c", lambda item, token: state.complete(item, token, NOW, step_hash="h",
                                                 memo=b'{"data":1}')),
        ("r", lambda item, token: state.retry(item, token, NOW, "err")),
        ("p", lambda item, token: state.plan(item, token, NOW, [("a", "call", NOW, "a")])),
        ("w", lambda item, token: state.pause(item, token, NOW, ref=_ref("w:h"),
                                              pause={"id": "w:h"}, timeout_due=NOW + 1000,
                                              record=_record())),
    ):
        item, token = await _leased(redis, scripts, run_id)
        assert await state.cancel(run_id, NOW, {"message": "stop"}) == 1
        out = await act(item, token)
        code = out[0] if isinstance(out, tuple) else out
        assert code in (3, -3), (run_id, out)
        assert not await redis.hexists(keys.queue(0).items, item.id)
        assert await redis.hget(keys.run_memos(run_id), "h") is None
        assert not await redis.hexists(keys.pauses("x", 0), "w:h")


async def test_pause_and_resume_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    item, token = await _leased(redis, scripts)
    pause = {"id": "r1:h", "run_id": "r1", "fn_id": "f", "step": "h"}
    kw: dict[str, Any] = {"ref": _ref("r1:h", "ev"), "pause": pause,
                          "timeout_due": NOW + 1000, "record": _record()}
    assert await state.pause(item, "stale", NOW, **kw) == 0
    assert await state.pause(item, token, NOW, **kw) == 1
    assert await redis.smembers(keys.run_listeners("r1")) == {b'["r1:h","e","ev"]'}
    stored = orjson.loads(await redis.hget(keys.pauses("ev", 0), "r1:h"))
    assert await state.resume(_ref("r1:h", "ev"), stored, b"{}", NOW, _record()) == 1
    assert not await redis.exists(keys.run_listeners("r1"))
    assert await state.resume(_ref("r1:h", "ev"), stored, b"{}", NOW, _record()) == 0  # once
    # a pause of a run that ended meanwhile (its pauses are removed after the end, by the
    # outbox: lifecycle.py) is consumed, nothing scheduled
    item2, token2 = await _leased(redis, scripts, "r2")
    pause2 = {**pause, "id": "r2:h", "run_id": "r2"}
    assert await state.pause(item2, token2, NOW, **{**kw, "ref": _ref("r2:h", "ev"),
                                                    "pause": pause2}) == 1
    stored2 = orjson.loads(await redis.hget(keys.pauses("ev", 0), "r2:h"))
    await redis.hset(keys.run("r2"), "status", "Cancelled")  # ended without its cleanup
    assert await state.resume(_ref("r2:h", "ev"), stored2, b"{}", NOW, _record()) == 2
    assert not await redis.exists(keys.pauses("ev", 0), keys.run_listeners("r2"))


async def test_cancel_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    await _enqueue(redis, scripts, "r1")
    await _enqueue(redis, scripts, "r2")
    await Queue(redis, scripts).lease(NOW, 1000, 1)  # r1's first item is leased: started
    assert await state.cancel("r1", NOW, {"m": 1}, unless_started="r1:1") == 4
    assert await redis.hget(keys.run("r1"), "status") == b"Running"
    assert await state.cancel("r2", NOW, {"m": 1}, unless_started="r2:1") == 1
    assert await state.cancel("r2", NOW, {"m": 1}) == 0  # not running any more
    assert await state.cancel("nobody", NOW, {"m": 1}) == 0
    assert await redis.zscore(keys.runs_running(0), "r2") is None


async def test_checkpoint_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    await _enqueue(redis, scripts)
    steps = [("a", b'{"data":1}', _record("a")), ("b", b'{"data":2}', _record("b"))]
    assert (await state.checkpoint("r1", NOW, steps)).code == 2
    assert (await state.checkpoint("r1", NOW, steps)).code == 0  # first values kept
    assert await redis.lrange(keys.run_stack("r1"), 0, -1) == [b"a", b"b"]
    assert (await state.checkpoint("nobody", NOW, steps)).code == -1
    # a checkpoint names its call: refused once that call no longer holds its lease
    item, token = await _leased(redis, scripts, "r9")
    generation = token
    more = [("c", b'{"data":3}', _record("c"))]
    refused = await state.checkpoint("r9", NOW, more, item_id=item.id, generation="0" * 40)
    assert refused.code == -2
    beat = keys.call_beat(call_id_of(item.id, generation))
    assert await redis.get(beat) is None  # a refused checkpoint is no beat either
    await redis.hset(keys.run("r9"), "function_id", "f")
    first = await state.checkpoint("r9", NOW, more, item_id=item.id, generation=generation)
    # saved, noted as a beat of its call, and the run's function read in the same script
    assert (first.code, first.last_beat, first.fn_id, first.trace) == (1, None, "f", None)
    assert await redis.get(beat) == str(NOW).encode()
    again = await state.checkpoint("r9", NOW + 5, [("c2", b"1", _record("c2"))],
                                   item_id=item.id, generation=generation)
    assert (again.code, again.last_beat) == (1, NOW)  # the beat before this one
    assert await Queue(redis, scripts).reap(NOW + 10_000) >= 1  # the lease expired
    late = await state.checkpoint("r9", NOW, [("d", b"1", _record("d"))], item_id=item.id,
                                  generation=generation)
    assert late.code == -2


async def test_strand_codes(redis: Redis) -> None:
    scripts = Scripts(redis)
    state = RunState(redis, scripts)
    await _enqueue(redis, scripts)
    assert await state.fail_if_stranded("r1", NOW, {"message": "x"}) == 0  # has its item
    await redis.hdel(keys.queue(0).items, "r1:1")
    assert await state.fail_if_stranded("r1", NOW, {"message": "x"}) == 1
    assert await redis.hget(keys.run("r1"), "status") == b"Failed"
    await redis.zadd(keys.runs_running(0), {"r1": NOW})  # a stale index entry
    assert await state.fail_if_stranded("r1", NOW, {"message": "x"}) == 2
    assert await redis.zscore(keys.runs_running(0), "r1") is None


async def test_complete_caps_calls_without_progress(redis: Redis) -> None:
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    item, token = await _leased(redis, scripts)
    codes = []
    for _ in range(4):  # discovery calls that report nothing new
        code, leased, _ = await state.complete(
            item, token, NOW, next_due=NOW, next_template=item.template(),
            lease_expiry=NOW + 1000, max_idle_calls=2)
        codes.append(code)
        item = leased or item
    assert codes == [1, 1, 4, 4]  # the third would be one too many: nothing written
    assert await redis.hget(keys.run("r1"), "idle_calls") == b"2"
    # steps checkpointed during a call are progress: the count starts again
    assert (await state.checkpoint("r1", NOW, [("c", b'{"data":1}', _record("c"))])).code == 1
    code, _, _ = await state.complete(item, token, NOW, next_due=NOW,
                                      next_template=item.template(), lease_expiry=NOW + 1000,
                                      max_idle_calls=2)
    assert code == 1 and queue is not None
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
    assert by_step["w"].kind == "pause" and by_step["w"].payload == {"spec": ref}
    pause = {"id": "r1:w", "run_id": "r1", "fn_id": "f", "step": "w", "kind": "wait"}
    assert await state.pause(by_step["w"], token2, NOW, ref=_ref("r1:w"),
                             pause=pause, timeout_due=NOW + 60_000,
                             record=_record("w")) == 1
    stored = orjson.loads(await redis.hget(keys.pauses("x", 0), "r1:w"))
    assert await state.resume(_ref("r1:w"), stored, b'{"name":"x"}', NOW,
                              _record("w")) == 1
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
    await state.pause(by_step["w"], token2, NOW, ref=_ref("r1:w"), pause=pause,
                      timeout_due=NOW + 60_000, record=_record("w"))
    stored = orjson.loads(await redis.hget(keys.pauses("x", 0), "r1:w"))
    assert await state.resume(_ref("r1:w"), stored, b"null", NOW,
                              _record("w")) == 1
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
    slot = {"n": "test", "limit": 1, "label": "full"}
    holders, waiting = keys.slot_keys("test", 0)
    await redis.zadd(holders, {"someone-else": NOW + 60_000})  # the key is full
    held = dataclasses.replace(item, ck=[slot])
    assert await state.plan(held, token, NOW, [("s", "sleep", NOW, "s"),
                                               ("w", "pause", NOW, "{}"),
                                               ("a", "call", NOW, "a")]) == 3
    leased, token2, _ = await queue.lease(NOW, 1000, 10)
    assert sorted(i.kind for i in leased) == ["pause", "sleep"]  # the call waits for the key
    assert all(i.ck == [slot] for i in leased)  # kept for the discovery that follows them
    assert await redis.zcard(waiting) == 1
    sleep = next(i for i in leased if i.kind == "sleep")
    await state.complete(sleep, token2, NOW, step_hash="s", memo=b"null")
    assert await redis.zcard(waiting) == 1  # releasing a timer frees no one


async def test_the_strict_keys_guard_fails_a_key_not_in_keys(redis: Redis) -> None:
    """The guard every test runs the scripts behind (tests/conftest.py sets STRICT_ENV):
    a command naming a key its caller did not pass fails the script; declared keys pass."""
    from executor.scripts import _STRICT_GUARD

    body = "redis.call('SET', KEYS[1], 'v') return redis.call('GET', ARGV[1])"
    assert await redis.eval(_STRICT_GUARD + body, 1, "declared", "declared") == b"v"
    with pytest.raises(Exception, match="strict keys: GET names a key not in KEYS: elsewhere"):
        await redis.eval(_STRICT_GUARD + body, 1, "declared", "elsewhere")
    with pytest.raises(Exception, match="strict keys: EXISTS"):
        await redis.eval(_STRICT_GUARD + "return redis.call('EXISTS', KEYS[1], 'x')", 1, "k")


async def test_a_call_of_a_run_gone_or_ended_counts_no_queue_wait(redis: Redis) -> None:
    """call_start.lua adds a call's queue wait to a Running run only: it never writes a
    hash back for a run retention deleted."""
    scripts = Scripts(redis)
    queue, state = Queue(redis, scripts), RunState(redis, scripts)
    await _enqueue(redis, scripts)
    (item,), _, _ = await queue.lease(NOW + 50, 1000, 10)
    assert item.queued_ms == 50 and item.leased_at == NOW + 50
    await redis.delete(keys.run("r1"))
    assert await state.load("r1", item) is None
    assert not await redis.exists(keys.run("r1"))
    assert item.queued_ms == 0


async def test_a_failed_second_lease_round_keeps_the_first_rounds_calls(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round one leases the calls that take no slot; when round two (the calls that take
    slots, their keys named) fails, round one's calls are still handed out."""
    scripts = Scripts(redis)
    queue = Queue(redis, scripts)
    await _enqueue(redis, scripts, "plain")
    await _enqueue_limited(redis, scripts, "limited",
                           {"n": "s", "limit": 1, "label": "concurrency limit 1"})
    pipelined, rounds = scripts.pipelined, []

    async def second_fails(client: Any, fill: Any) -> list[Any]:
        rounds.append(1)
        if len(rounds) == 2:
            raise ConnectionError("gone")
        return await pipelined(client, fill)

    monkeypatch.setattr(scripts, "pipelined", second_fails)
    items, _, next_due = await queue.lease(NOW, 1000, 10)
    assert [i.run_id for i in items] == ["plain"] and next_due == NOW
    monkeypatch.setattr(scripts, "pipelined", pipelined)
    again, _, _ = await queue.lease(NOW, 1000, 10)
    assert [i.run_id for i in again] == ["limited"]
