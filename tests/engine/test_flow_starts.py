"""Issue 11.1 for the starts ingest.lua decides: the script touches only keys it is given.
The runs a debounce or batch hash names (which a joining event writes) are read just before
the script, their keys given to it; one that changed in between makes the script write
nothing and the piece go again with what the script found. A singleton is a field of its
home shard's singletons hash, set by the script that creates the run holding it and freed
by the one that ends it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from executor import flow, keys, scripts
from executor import ingest as ingest_module
from executor.driver import Completed
from executor.events import IncomingEvent
from executor.ingest import script_args

from .harness import Engine, total


def _home(engine: Engine, fn_id: str) -> int:
    home = flow.home_shard(fn_id, engine.executor.registry.functions[fn_id].flow)
    assert home is not None
    return home


def _meddle_once(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                 meddle: Any) -> list[dict[tuple[str, str], str]]:
    """Run `meddle` once, right after the next read of the runs a start needs (between it
    and the script). Returns every read made (what each found)."""
    ingest = engine.executor.ingest
    read = ingest._holders
    seen: list[dict[tuple[str, str], str]] = []

    async def then_meddle(reads: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found = await read(reads)
        if not reads:
            return found  # an event's piece in its own shard, its run in the home shard
        seen.append(found)
        if len(seen) == 1:
            monkeypatch.setattr(ingest, "_holders", read)  # the meddler's own reads
            await meddle()
            monkeypatch.setattr(ingest, "_holders", then_meddle)
        return found

    monkeypatch.setattr(ingest, "_holders", then_meddle)
    return seen


async def test_a_debounce_run_replaced_between_the_read_and_the_script_is_joined_after_all(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    await engine.sync({"id": "f", "debounce": {"period": "10s"}})
    engine.answer(lambda call: Completed(call.event["data"].get("n")))
    (first,) = await engine.send({"n": 1})
    engine.clock.advance(11_000)
    await engine.run_until_idle()  # the first run started: the hash names a run gone by
    assert (await engine.run(first))["status"] == "Completed"
    replaced: list[list[str]] = []

    async def another_event_starts_the_next_run() -> None:
        replaced.append(await engine.send({"n": 2}))

    seen = _meddle_once(engine, monkeypatch, another_event_starts_the_next_run)
    assert await engine.send({"n": 3}) == []  # joined the run the other event started
    (second,) = replaced[0]
    key = (keys.debounce("f", "_", _home(engine, "f")), "run")
    # read once: after `moved`, it went again with the run the script found there
    assert [found[key] for found in seen] == [first]
    assert await total(redis, keys.runs) == 2
    run = await engine.run(second)
    assert orjson.loads(run["event"])["data"] == {"n": 3}  # debounce: the last event
    engine.clock.advance(11_000)
    await engine.run_until_idle()
    assert (await engine.run(second))["output"] == 3
    assert await total(redis, keys.runs) == 2


async def test_a_batch_filled_between_the_read_and_the_script_starts_the_next_one(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    await engine.sync({"id": "f", "batchEvents": {"maxSize": 2, "timeout": "10s"}})
    engine.answer(lambda call: Completed(None))
    (first,) = await engine.send({"n": 1})
    joined: list[list[str]] = []

    async def another_event_fills_the_batch() -> None:
        joined.append(await engine.send({"n": 2}))

    seen = _meddle_once(engine, monkeypatch, another_event_fills_the_batch)
    (second,) = await engine.send({"n": 3})  # the batch it read was full: a new one
    assert joined == [[]]
    key = (keys.batch("f", "_", _home(engine, "f")), "run")
    assert [found[key] for found in seen] == [first]
    batched = [[e["data"]["n"] for e in orjson.loads((await engine.run(r))["events"])]
               for r in (first, second)]
    assert batched == [[1, 2], [3]]  # nothing lost, nothing twice
    assert await total(redis, keys.runs) == 2


async def test_a_piece_whose_run_moved_writes_nothing(engine: Engine, redis: Redis) -> None:
    """The script checks what the caller read before it writes anything."""
    await engine.sync({"id": "f", "debounce": {"period": "10s"}})
    (pending,) = await engine.send({"n": 1})
    home = _home(engine, "f")
    event = IncomingEvent(engine.event_id(99), {"name": "test/go", "data": {"n": 2}, "id": "",
                                                "ts": engine.clock(), "user": {}}, "")
    run = engine.executor.ingest.new_run(engine.executor.registry.functions["f"], [event],
                                         engine.clock())
    payload = {"now": engine.clock(), "intake_id": "x:intake", "events": [], "runs": [run]}
    key = keys.debounce("f", "_", home)
    before = await redis.zcard(keys.runs(home))
    # as read before the pending run was there: the script must not take it for none
    answer = orjson.loads(await engine.executor.scripts(
        "ingest", *script_args(home, payload, {(key, "run"): ""})))
    assert answer == {"stale": True, "moved": True, "holders": [pending]}
    assert not await redis.exists(keys.run(run["run_id"]))
    assert await redis.zcard(keys.runs(home)) == before
    assert await redis.hget(key, "run") == pending.encode()
    assert orjson.loads((await engine.run(pending))["event"])["data"] == {"n": 1}
    # read right, it joins the pending run
    answer = orjson.loads(await engine.executor.scripts(
        "ingest", *script_args(home, payload, {(key, "run"): pending})))
    assert not answer["created"]
    assert orjson.loads((await engine.run(pending))["event"])["data"] == {"n": 2}


async def test_a_singleton_is_free_once_its_run_ends(engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f", "singleton": {"mode": "skip"}})
    home = _home(engine, "f")
    (first,) = await engine.send()
    name = (await engine.run(first))["singleton"]
    assert await redis.hget(keys.singletons(home), name) == first.encode()
    (skipped,) = await engine.send()
    assert (await engine.run(skipped))["status"] == "Skipped"
    await engine.run_until_idle()  # the first run completes
    assert (await engine.run(first))["status"] == "Completed"
    assert not await redis.hexists(keys.singletons(home), name)
    (again,) = await engine.send()
    assert (await engine.run(again))["status"] == "Running"
    # a cancelled holder frees it too
    assert await engine.executor.ingest.cancel(again, "stop")
    assert not await redis.hexists(keys.singletons(home), name)
    (third,) = await engine.send()
    assert (await engine.run(third))["status"] == "Running"


async def test_a_replaced_singleton_run_leaves_the_field_to_its_successor(
        engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f", "singleton": {"mode": "cancel"}})
    home = _home(engine, "f")
    (old,) = await engine.send()
    (new,) = await engine.send()  # cancels the old run (its intake, done at once)
    assert (await engine.run(old))["status"] == "Cancelled"
    name = (await engine.run(new))["singleton"]
    assert await redis.hget(keys.singletons(home), name) == new.encode()
    await engine.run_until_idle()
    assert (await engine.run(new))["status"] == "Completed"
    assert not await redis.hexists(keys.singletons(home), name)


async def test_a_singleton_is_held_only_by_a_run_that_was_created(
        engine: Engine, redis: Redis) -> None:
    """An event that passes the singleton but joins another key's pending debounce starts
    no run, so it holds nothing: the next event of its singleton key starts a run."""
    await engine.sync({"id": "f", "singleton": {"mode": "skip", "key": "event.data.a"},
                       "debounce": {"period": "10s", "key": "event.data.b"}})
    home = _home(engine, "f")
    (first,) = await engine.send({"a": 1, "b": 1})
    assert await engine.send({"a": 2, "b": 1}) == []  # joined the first run's debounce
    held = await redis.hgetall(keys.singletons(home))
    assert list(held.values()) == [first.encode()]  # a=2 is held by nobody
    (third,) = await engine.send({"a": 2, "b": 2})
    assert (await engine.run(third))["status"] == "Running"


async def test_concurrent_starts_of_one_key_all_get_through(engine: Engine) -> None:
    """Many requests at once for one singleton (cancel mode: each new run takes the field)
    or one batch (filled every two events): a request whose run moved goes again with what
    the script found, and every one is accepted."""
    await engine.sync({"id": "one", "singleton": {"mode": "cancel"}, "triggers": [{"event": "test/one"}]},
                      {"id": "two", "batchEvents": {"maxSize": 2, "timeout": "10s"},
                       "triggers": [{"event": "test/two"}]})
    for name in ("test/one", "test/two"):
        answers = await asyncio.gather(*(engine.send({"n": n}, name=name) for n in range(40)),
                                       return_exceptions=True)
        assert [a for a in answers if isinstance(a, BaseException)] == []


async def test_ingest_touches_only_the_keys_it_is_given(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """ingest.lua behind the strict-keys guard (scripts.STRICT_ENV): events with a sender id,
    search terms and pauses to match; runs with every start-time option, cancel listeners,
    joined debounces and batches, a singleton replaced. Any key the script did not get in
    KEYS fails the request."""
    monkeypatch.setenv(scripts.STRICT_ENV, "1")
    engine.executor.ingest.scripts = scripts.Scripts(redis)  # ingest.lua alone is guarded
    monkeypatch.delenv(scripts.STRICT_ENV)
    await engine.sync(
        {"id": "deb", "debounce": {"period": "10s", "key": "event.data.k", "timeout": "1m"},
         "cancel": [{"event": "test/stop", "if": "async.data.k == event.data.k"}]},
        {"id": "bat", "batchEvents": {"maxSize": 3, "timeout": "10s"}},
        {"id": "one", "singleton": {"mode": "cancel", "key": "event.data.k"},
         "rateLimit": {"limit": 100, "period": "1m"},
         "throttle": {"limit": 100, "period": "1m"}, "idempotency": "event.data.n",
         "timeouts": {"start": "1m"}})
    for n in range(6):
        await engine.send({"k": n % 2, "n": n, "words": "hello world"}, event_id=f"sent-{n}")
        await engine.send({"k": n % 2, "n": n}, event_id=f"sent-{n}")  # a repeat
    await engine.send({"k": 0}, name="test/stop")
    await engine.run_until_idle()
    assert await total(redis, keys.runs) > 0


async def test_a_run_that_keeps_moving_fails_the_request_after_a_few_tries(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tries are bounded: a piece whose run moves every time fails the request, which
    writes nothing of the run (the sender retries it; an event already stored in its own
    shard names the run in its intake item, for a worker to start)."""
    await engine.sync({"id": "f", "debounce": {"period": "10s"}})
    (pending,) = await engine.send({"n": 1})
    ingest = engine.executor.ingest
    run_script = ingest.scripts
    tries: list[int] = []

    async def always_moved(name: str, script_keys: list[str], args: list[Any],
                           client: Any = None) -> Any:
        if name != "ingest" or b'"expect"' not in args[0]:
            return await run_script(name, script_keys, args, client)
        tries.append(1)
        return orjson.dumps({"stale": True, "moved": True, "holders": [""]})

    monkeypatch.setattr(ingest_module, "MOVED_TRIES", 5)
    monkeypatch.setattr(ingest, "scripts", always_moved)
    with pytest.raises(RuntimeError, match="changed"):
        await engine.send({"n": 2})
    assert len(tries) == 5
    assert await total(redis, keys.runs) == 1
    assert orjson.loads((await engine.run(pending))["event"])["data"] == {"n": 1}
