"""Retention: after the period passes, an ended run, its events and every index entry are
gone, and Redis is back to the key count and memory it had before; Running runs stay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

import dashboard
from executor import control, cron, indexes, keys
from executor.api import create_app
from executor.driver import Completed
from executor.retention import Retention

from .harness import Call, Engine, ops, step_run

DAY_MS = 24 * 3600 * 1000


def _all(index: Callable[[int], str]) -> list[str]:
    """An index's key in every shard."""
    return [index(shard) for shard in keys.shards()]


async def _exists(redis: Redis, index: Callable[[int], str]) -> int:
    """In how many shards an index exists."""
    return sum([await redis.exists(key) for key in _all(index)])


async def _zcard(redis: Redis, index: Callable[[int], str]) -> int:
    return sum([await redis.zcard(key) for key in _all(index)])


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
    assert await _zcard(redis, keys.runs) == 1  # only the sleeping run
    assert await _zcard(redis, lambda shard: keys.runs_of_function("f", shard)) == 1
    keys_after, memory_after = await _footprint(redis)
    # what is left is the sleeping run's own keys and the indexes and queue it is in
    shard = keys.shard_of(sleeping)
    queue = keys.queue(shard)
    shared = {keys.runs(shard), keys.runs_running(shard), keys.runs_of_function("f", shard),
              queue.items, queue.ready, queue.wake, keys.APPS, keys.FUNCTIONS,
              keys.REGISTRY_VERSION, *_all(keys.registry_version),
              *_all(lambda s: keys.queue(s).wake),  # a few wake-ups no worker took
              *_all(lambda s: keys.function_usage("f", s))}  # a function's spend stays
    left = {k.decode() for k in await redis.keys("*")} - shared
    # the dashboard's: the sleeping run's status and search entries stay with it; the
    # statistics expire on their own
    stats = {k for k in left if k.startswith(tuple(f"{keys.prefix(s)}:stats:"
                                                   for s in keys.shards()))}
    assert all([await redis.pttl(k) > 0 for k in stats])
    event = orjson.loads(await redis.hget(keys.run(sleeping), "event"))  # type: ignore[misc]
    dashboard = {keys.runs_of_function_status("f", "Running", shard)} | {
        key for key, _, _ in indexes.entries(indexes.event_document(event), indexes.RUNS, shard)}
    assert left - stats <= set(keys.run_keys(sleeping)) | dashboard, left - stats
    assert keys_after - len(stats) < keys_before + len(shared) + 4 + len(dashboard)
    if memory_before:  # the fake Redis reports no memory
        assert memory_after - memory_before < (memory_full - memory_before) / 10, (
            memory_before, memory_full, memory_after)


# -- removed functions, retired schedules, stale apps -------------------------------------

def _registration(app: str, *functions: dict[str, Any]) -> dict[str, Any]:
    url = f"http://{app}.test/api/inngest"
    return {"appName": app, "url": url, "functions": [
        {"name": f["id"], "triggers": [{"event": "test/go"}],
         "steps": {"step": {"id": "step", "name": "step",
                            "runtime": {"type": "http", "url": f"{url}?fnId={f['id']}"}}},
         **f} for f in functions]}


async def _sync(engine: Engine, app: str, *functions: dict[str, Any]) -> None:
    await engine.executor.scripts.load_all()
    body = _registration(app, *functions)
    await engine.executor.registry.sync(body, orjson.dumps(body), engine.clock())


def _metered(call: Call) -> Any:
    """One metered step, then done (so the function has usage totals)."""
    if not call.steps:
        return ops({**step_run("u" * 40, "x"), "usage": {
            "calls": 1, "models": {"m": {"input_tokens": 9, "cost_usd": 0.01}}}})
    return Completed("done")


async def _sweep(retention: Retention) -> None:
    while max(await retention.sweep()) >= retention.batch:
        pass


async def test_a_removed_function_keeps_its_cron_state_and_usage_for_the_period_only(
        engine: Engine, redis: Redis) -> None:
    every_minute = {"id": "tick", "triggers": [{"cron": "* * * * *"}]}
    moved = {"id": "moved", "triggers": [{"cron": "*/5 * * * *"}]}
    await _sync(engine, "app", every_minute, moved, {"id": "f"})
    engine.answer(_metered)
    scheduler = engine.executor.scheduler
    await scheduler.tick()  # first sight of each schedule: counts from now
    engine.clock.advance(5 * 60_000)
    await scheduler.tick()  # fires both
    await engine.send()  # and `f` runs
    await engine.run_until_idle()
    tick, old = cron.schedule_id("tick", "* * * * *"), cron.schedule_id("moved", "*/5 * * * *")
    last = int(await redis.get(keys.cron_last(tick)) or 0)
    assert last and await redis.exists(keys.cron_tick(tick, last))
    assert await _exists(redis, lambda s: keys.function_usage("tick", s))
    assert await _exists(redis, lambda s: keys.function_usage("f", s))
    # the app drops `tick` and changes `moved`'s schedule
    await _sync(engine, "app", {**moved, "triggers": [{"cron": "*/10 * * * *"}]}, {"id": "f"})
    await scheduler.tick()
    retention = Retention(redis, engine.clock, retention_ms=DAY_MS)
    await _sweep(retention)
    assert await redis.exists(keys.cron_last(tick), keys.cron_last(old)) == 2
    assert await _exists(redis, lambda s: keys.function_usage("tick", s))  # kept for the period
    engine.clock.advance(DAY_MS + 1)
    await _sweep(retention)
    assert not await redis.exists(keys.cron_last(tick), keys.cron_tick(tick, last),
                                  keys.cron_last(old))
    assert not await _exists(redis, lambda s: keys.function_usage("tick", s))
    assert await redis.exists(keys.cron_last(cron.schedule_id("moved", "*/10 * * * *")))
    assert await _exists(redis, lambda s: keys.function_usage("f", s))  # still synced: kept
    assert not await redis.exists(keys.FUNCTIONS_REMOVED, keys.CRONS_RETIRED)


async def test_a_schedule_put_back_within_the_period_keeps_its_last_tick(
        engine: Engine, redis: Redis) -> None:
    nightly = {"id": "nightly", "triggers": [{"cron": "0 3 * * *"}]}
    await _sync(engine, "app", nightly)
    await engine.executor.scheduler.tick()
    schedule = cron.schedule_id("nightly", "0 3 * * *")
    await _sync(engine, "app")  # a deploy without it...
    engine.clock.advance(DAY_MS // 2)
    await _sync(engine, "app", nightly)  # ...rolled back
    assert not await redis.exists(keys.FUNCTIONS_REMOVED, keys.CRONS_RETIRED)
    engine.clock.advance(DAY_MS)
    await _sweep(Retention(redis, engine.clock, retention_ms=DAY_MS))
    assert await redis.exists(keys.cron_last(schedule))


async def test_an_app_with_no_functions_goes_after_the_period_once_its_runs_ended(
        engine: Engine, redis: Redis) -> None:
    await _sync(engine, "busy", {"id": "kept"})
    await _sync(engine, "emptied", {"id": "old", "triggers": [{"event": "test/old"}]})
    await _sync(engine, "never")
    engine.answer(lambda call: ops({"op": "Sleep", "id": "s" * 40, "opts": {"duration": "30d"}}))
    (running,) = await engine.send(name="test/old")
    await engine.run_until_idle()
    await _sync(engine, "emptied")  # its function goes; a run of it is still Running
    retention = Retention(redis, engine.clock, retention_ms=DAY_MS)
    engine.clock.advance(DAY_MS // 2)
    await _sweep(retention)
    assert await redis.hlen(keys.APPS) == 3  # none is past the period yet
    engine.clock.advance(DAY_MS)
    await _sweep(retention)
    # `busy` has not synced for the period either, but owns a function: kept
    assert {a.decode() for a in await redis.hkeys(keys.APPS)} == {"busy", "emptied"}
    assert await redis.hexists(keys.FUNCTIONS_REMOVED, "old")
    assert await engine.executor.ingest.cancel(running, "done waiting")
    await _sweep(retention)
    assert {a.decode() for a in await redis.hkeys(keys.APPS)} == {"busy"}
    assert not await redis.exists(keys.FUNCTIONS_REMOVED)
    assert [f.id for f in engine.executor.registry.functions.values()] == ["kept"]


async def test_an_app_synced_without_functions_goes_after_the_period(
        engine: Engine, redis: Redis) -> None:
    await _sync(engine, "moved-away")  # its functions now live in another app
    retention = Retention(redis, engine.clock, retention_ms=DAY_MS)
    await _sweep(retention)
    assert await redis.hexists(keys.APPS, "moved-away")
    engine.clock.advance(DAY_MS + 1)
    await _sweep(retention)
    assert not await redis.exists(keys.APPS)


async def test_concurrency_values_nothing_waits_on_leave_the_backlog_set(
        engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f", "concurrency": [{"limit": 1, "key": "event.data.customer"}]})
    engine.answer(lambda call: Completed("ok"))
    for customer in ("a", "a", "b", "b"):
        await engine.send({"customer": customer})
    await engine.run_until_idle()
    held = {m.decode() for key in _all(keys.concurrency_waiting_keys)
            for m in await redis.smembers(key)}  # type: ignore[misc]
    assert len(held) == 2 and not await redis.exists(*held)  # both emptied
    await Retention(redis, engine.clock, retention_ms=DAY_MS).sweep()
    assert not await _exists(redis, keys.concurrency_waiting_keys)


async def test_a_rerun_of_a_run_that_outlived_its_event_leaves_no_run_list_behind(
        engine: Engine, redis: Redis) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Any:
        if "n" * 40 in call.steps:
            return Completed("woke")
        return ops({"op": "Sleep", "id": "n" * 40, "opts": {"duration": "36h"}})

    engine.answer(answer)
    (run_id,) = await engine.send()
    event_id = engine.event_id(engine.sent)
    await engine.run_until_idle()
    retention = Retention(redis, engine.clock, retention_ms=DAY_MS)
    engine.clock.advance(DAY_MS + 1)
    await _sweep(retention)  # the event goes; its run sleeps on
    runs_of_event = _all(lambda s: keys.event_runs(event_id, s))
    assert not await redis.exists(keys.event(event_id), *runs_of_event)
    engine.clock.advance(DAY_MS // 2)
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    await control.rerun(engine.executor, run_id, reason="again")  # lists itself under the event
    await engine.run_until_idle()
    assert await redis.exists(*runs_of_event)
    engine.clock.advance(2 * DAY_MS)
    await engine.run_until_idle()  # the rerun wakes and completes
    engine.clock.advance(DAY_MS + 1)
    await _sweep(retention)
    assert not await redis.exists(*_all(keys.runs), *runs_of_event)


# -- expired ids answer 404 ------------------------------------------------------------------

async def test_expired_runs_and_events_answer_a_404_naming_the_id(redis: Redis) -> None:
    engine = Engine(redis, retention_ms=DAY_MS)
    app = create_app(engine.executor, manage_lifecycle=False)
    dashboard.mount(app, engine.executor)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            await engine.sync({"id": "f"})
            engine.answer(lambda call: Completed("done"))
            (run_id,) = await engine.send({"n": 1})
            event_id = engine.event_id(engine.sent)
            await engine.run_until_idle()
            paths = {"run": [f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/steps"],
                     "event": [f"/v1/events/{event_id}", f"/v1/events/{event_id}/runs"]}
            pages = {"run": f"/runs/{run_id}", "event": f"/events/{event_id}"}
            for path in [*paths["run"], *paths["event"], *pages.values()]:
                assert (await http.get(path)).status_code == 200, path
            engine.clock.advance(DAY_MS + 1)
            await _sweep(engine.executor.scheduler.retention)
            for kind, found_id in (("run", run_id), ("event", event_id)):
                for path in paths[kind]:
                    answer = await http.get(path)
                    assert answer.status_code == 404, path
                    body = answer.json()
                    assert body[f"{kind}_id"] == found_id, body
                    assert found_id in body["error"] and "retention period (1d)" in body[
                        "error"], body
                page = await http.get(pages[kind])
                assert page.status_code == 404
                assert (f"There is no {kind} {found_id}" in page.text
                        and "retention period (1d)" in page.text), page.text
            for answer in (await http.delete(f"/v1/runs/{run_id}"),
                           await http.post(f"/v1/runs/{run_id}/rerun", json={})):
                assert answer.status_code == 404 and answer.json()["run_id"] == run_id
            never = await http.get("/v1/events/01J000000000000000000NOPE0/runs")
            assert never.status_code == 404  # unknown and expired read the same
            assert (await http.get("/v1/functions/f/usage")).status_code == 200
            await engine.sync({"id": "g"})  # `f` is removed: its usage goes after the period
            assert (await http.get("/v1/functions/f/usage")).status_code == 200
            engine.clock.advance(DAY_MS + 1)
            await _sweep(engine.executor.scheduler.retention)
            gone = await http.get("/v1/functions/f/usage")
            assert gone.status_code == 404 and gone.json()["function_id"] == "f"
    finally:
        await engine.executor.driver.close()
