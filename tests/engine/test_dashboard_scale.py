"""Issue 15 on the engine itself (fake app, injected clock, fake and real Redis): the exact
counters and indexes the run scripts write, every attempt of a step, sub-statuses, and the
searches and filters answered from those indexes. Each test fails without the feature (the
old read model sampled runs, scanned with a budget, kept one error per step)."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from executor import keys, metrics_store
from executor.driver import CallError, Completed, Outcome
from executor.read_model import RunQuery, parse_search

from .harness import START_MS, Call, Engine, ops, step_run, total

MINUTE = 60_000


def _h(name: str) -> str:
    return name.ljust(40, "0")


def _close(value: int | None, expected: float) -> bool:
    """A percentile read from buckets 1/16 octave wide is within 2.2 % of the value."""
    return value is not None and abs(value - expected) <= 0.023 * expected + 1


async def test_counters_are_exact_and_queue_time_is_not_execution_time(engine: Engine) -> None:
    await engine.sync({"id": "fast"}, {"id": "broken", "triggers": [{"event": "test/broken"}]})

    def answer(call: Call) -> Outcome:
        engine.clock.advance(30)  # every call takes 30 ms
        if call.event["name"] == "test/broken":
            return CallError("boom", {"name": "Error", "message": "boom"}, retriable=False)
        if not call.steps:
            return ops(step_run(_h("a"), {"ok": 1}, "only-step"))
        return Completed({"done": True})

    engine.answer(answer)
    for _ in range(7):
        await engine.send()
        engine.clock.advance(5_000)  # no worker for 5 s: queue time, not execution time
        await engine.run_until_idle()
    for _ in range(3):
        await engine.send(name="test/broken")
        await engine.run_until_idle()
    metrics = await engine.executor.read.function_metrics(engine.clock(), "1h")
    fast, broken = metrics["functions"]["fast"], metrics["functions"]["broken"]
    assert fast["started"] == 7 and fast["ended"]["Completed"] == 7
    assert fast["failure_rate"] == 0 and fast["hour"] == 7
    assert _close(fast["exec"]["p50"], 60) and _close(fast["exec"]["p99"], 60)  # two calls
    assert _close(fast["queue"]["p50"], 5_000) and fast["queue"]["count"] == 7
    assert broken["started"] == 3 and broken["failed"] == 3 and broken["failure_rate"] == 1
    assert sum(b["Completed"] for b in fast["series"]) == 7
    assert sum(b["Failed"] for b in broken["series"]) == 3
    # the counters sit in per-minute and per-hour hashes that expire
    counted = 0
    for shard in keys.shards():
        minute = keys.stats_minute("fast", engine.clock() // MINUTE, shard)
        started = int(await engine.redis.hget(minute, "started") or 0)  # type: ignore[misc]
        if started:
            counted += started
            assert await engine.redis.pttl(minute) > 0
    assert counted >= 1


async def test_percentiles_come_from_every_run_not_a_sample(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    durations = [10 * (i + 1) for i in range(100)]  # 10 ms .. 1000 ms
    calls = iter(durations)

    def answer(call: Call) -> Outcome:
        engine.clock.advance(next(calls))
        return Completed(None)

    engine.answer(answer)
    for _ in durations:
        await engine.send()
        await engine.run_until_idle()
    fn = (await engine.executor.read.function_metrics(engine.clock(), "24h"))["functions"]["f"]
    assert fn["finished"] == 100 and fn["exec"]["count"] == 100
    assert _close(fn["exec"]["p50"], 500) and _close(fn["exec"]["p95"], 950)
    assert _close(fn["exec"]["p99"], 990)
    assert fn["queue"]["p99"] == 0


async def test_backlog_counts_ready_items_per_function_with_the_oldest_age(
        engine: Engine) -> None:
    await engine.sync({"id": "f"}, {"id": "g", "triggers": [{"event": "test/g"}]})
    for _ in range(3):
        await engine.send()
    engine.clock.advance(1_000)
    await engine.send(name="test/g")
    engine.clock.advance(4_000)
    metrics = await engine.executor.read.function_metrics(engine.clock(), "1h")
    assert metrics["functions"]["f"]["backlog"] == {"count": 3, "oldest_ms": START_MS,
                                                    "age_ms": 5_000}
    assert metrics["functions"]["g"]["backlog"]["count"] == 1
    await engine.run_until_idle()
    after = await engine.executor.read.function_metrics(engine.clock(), "1h")
    assert after["functions"]["f"]["backlog"]["count"] == 0


async def test_status_and_function_indexes_follow_each_run(engine: Engine,
                                                          redis: Redis) -> None:
    await engine.sync({"id": "f"}, {"id": "g", "triggers": [{"event": "test/g"}]})
    (run_id,) = await engine.send()
    shard = keys.shard_of(run_id)  # a run's indexes are in its own shard
    running = keys.runs_of_function_status("f", "Running", shard)
    assert await redis.zscore(running, run_id) == START_MS
    engine.answer(lambda call: Completed(1))
    await engine.run_until_idle()
    assert await redis.zscore(running, run_id) is None
    assert await redis.zscore(keys.runs_by_status("Completed", shard), run_id) == START_MS
    assert await redis.zscore(keys.runs_of_function_status("f", "Completed", shard), run_id)
    engine.answer(lambda call: CallError("x", {"name": "Error", "message": "x"}, False))
    failed = [(await engine.send(name="test/g"))[0] for _ in range(3)]
    await engine.run_until_idle()
    read = engine.executor.read
    page = await read.runs_page(RunQuery(status="Failed"), None, 2)
    assert page.total == 3 and [r["run_id"] for r in page.rows] == failed[::-1][:2]
    rest = await read.runs_page(RunQuery(status="Failed"), page.next_cursor, 2)
    assert [r["run_id"] for r in rest.rows] == [failed[0]] and rest.total == 3
    both = await read.runs_page(RunQuery(function_id="f", status="Failed"))
    assert both.total == 0 and both.rows == []
    assert (await read.runs_page(RunQuery(function_id="g"))).total == 3


async def test_every_attempt_keeps_its_start_end_error_and_queue_wait(engine: Engine) -> None:
    await engine.sync({"id": "f", "steps": {"step": {
        "id": "step", "name": "step", "retries": {"attempts": 4},
        "runtime": {"type": "http", "url": "http://app.test/api/inngest?fnId=f"}}}})
    seen = {"n": 0}

    def answer(call: Call) -> Outcome:
        if _h("llm") in call.steps:
            return Completed("done")
        seen["n"] += 1
        engine.clock.advance(25)
        if seen["n"] <= 2:
            return ops({"op": "StepError", "id": _h("llm"), "name": "llm-summarize",
                        "error": {"name": "RateLimitError",
                                  "message": f"429 Too Many Requests ({seen['n']})"}})
        return ops(step_run(_h("llm"), {"text": "ok"}, "llm-summarize"))

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    for _ in range(2):
        engine.clock.advance(1_000 + 2_000)  # backoff (1 s), then 2 s before a worker is free
        await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    detail = await engine.executor.read.run_detail(run_id, engine.clock())
    assert detail is not None
    (step,) = [s for s in detail["steps"] if s["name"] == "llm-summarize"]
    tries = step["tries"]
    assert [t["n"] for t in tries] == [1, 2, 3] and step["max_attempts"] == 5
    assert [t["status"] for t in tries] == ["Retrying", "Retrying", "Completed"]
    assert tries[0]["error"]["message"] == "429 Too Many Requests (1)"
    assert tries[1]["error"]["name"] == "RateLimitError" and tries[2]["error"] is None
    assert all(t["end_ms"] - t["start_ms"] == 25 for t in tries)
    assert [t["queued_ms"] for t in tries] == [0, 2_000, 2_000]
    assert tries[0]["retry_at_ms"] == tries[0]["end_ms"] + 1_000
    assert step["started_ms"] == tries[0]["start_ms"]
    run = detail["run"]
    assert run["queue_ms"] == 4_000 and run["exec_ms"] == 3 * 25


async def test_search_covers_event_output_and_error_with_and_or(engine: Engine) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        data = call.event["data"]
        if data.get("fail"):
            return CallError("rate", {"name": "RateLimitError", "message": "slow down"},
                             retriable=False)
        return Completed({"summary": {"tokens": data["n"] * 10, "text": f"doc {data['n']}"}})

    engine.answer(answer)
    ids: dict[int, str] = {}
    for n in range(12):
        (ids[n],) = await engine.send({"user_id": n % 4, "n": n, "fail": n in (5, 9),
                                       "plan": "free" if n % 2 else "pro"})
        await engine.run_until_idle()
    read = engine.executor.read

    async def found(text: str, **extra: Any) -> list[int]:
        query = RunQuery(search=parse_search(text), **extra)
        page = await read.runs_page(query, None, 50)
        assert page.total == len(page.rows)
        back = {v: k for k, v in ids.items()}
        return sorted(back[r["run_id"]] for r in page.rows)

    assert await found("data.user_id = 2") == [2, 6, 10]
    assert await found("output.summary.tokens > 100") == [11]
    assert await found("output.summary.tokens >= 70 and data.plan = free") == [7, 11]
    assert await found('error.name = "RateLimitError"') == [5, 9]
    assert await found("error.name = RateLimitError or data.user_id = 0") == [0, 4, 5, 8, 9]
    assert await found("(data.user_id = 1 or data.user_id = 2) and data.plan != free") == [
        2, 6, 10]
    assert await found("data.plan != pro") == [1, 3, 5, 7, 9, 11]
    assert await found("slow down") == [5, 9]  # free text: the error's words
    assert await found("doc 11") == [11]
    assert await found("do*", status="Completed") == [0, 1, 2, 3, 4, 6, 7, 8, 10, 11]
    assert await found("data.user_id = 1", status="Failed") == [5, 9]


async def test_sub_statuses_say_why_a_run_is_running(engine: Engine) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        kind = call.event["data"]["kind"]
        if kind == "sleep":
            return ops({"op": "Sleep", "id": _h("nap"), "name": "nap",
                        "opts": {"duration": "1h"}})
        if kind == "wait":
            return ops({"op": "WaitForEvent", "id": _h("w"), "name": "approval",
                        "opts": {"event": "approval/decided", "timeout": "2h"}})
        return CallError("503", {"name": "Error", "message": "503"})

    engine.answer(answer)
    sleeping = (await engine.send({"kind": "sleep"}))[0]
    waiting = (await engine.send({"kind": "wait"}))[0]
    retrying = (await engine.send({"kind": "retry"}))[0]
    await engine.run_until_idle()
    queued = (await engine.send({"kind": "queued"}))[0]
    now = engine.clock()
    page = await engine.executor.read.runs_page(RunQuery(status="Running"), None, 10, now)
    phases = {r["run_id"]: r["phase"] for r in page.rows}
    assert phases[sleeping]["label"] == "Sleeping" and phases[sleeping]["at_ms"] == now + 3_600_000
    assert phases[waiting]["label"] == "Waiting"
    assert phases[waiting]["detail"] == "approval/decided"
    assert phases[waiting]["at_ms"] == now + 7_200_000
    assert phases[retrying]["label"] == "Retrying (2/5)" and phases[retrying]["at_ms"] == now + 1000
    assert phases[queued]["label"] == "Queued"
    assert all(r["elapsed_ms"] == 0 for r in page.rows)


async def test_an_event_lists_the_runs_it_resumed_and_cancelled(engine: Engine) -> None:
    await engine.sync({"id": "waiter"},
                      {"id": "victim", "triggers": [{"event": "test/victim"}],
                       "cancel": [{"event": "approval/decided"}]})

    def answer(call: Call) -> Outcome:
        if call.event["name"] == "test/victim":
            return ops({"op": "Sleep", "id": _h("nap"), "name": "nap", "opts": {"duration": "1h"}})
        if _h("w") in call.steps:
            return Completed("ok")
        return ops({"op": "WaitForEvent", "id": _h("w"), "name": "approval",
                    "opts": {"event": "approval/decided", "timeout": "2h"}})

    engine.answer(answer)
    (waiter,) = await engine.send()
    (victim,) = await engine.send(name="test/victim")
    await engine.run_until_idle()
    await engine.send({"ok": True}, name="approval/decided")
    await engine.run_until_idle()
    event_id = engine.event_id(engine.sent)
    links = await engine.executor.read.event_links(event_id)
    assert [r["run_id"] for r in links["resumed"]] == [waiter]
    assert [r["run_id"] for r in links["cancelled"]] == [victim]
    detail = await engine.executor.read.run_detail(victim, engine.clock())
    assert detail is not None and detail["run"]["cancelled_by_event"] == event_id
    waited = await engine.executor.read.run_detail(waiter, engine.clock())
    assert waited is not None
    assert [s["matched"] for s in waited["steps"] if s["name"] == "approval"] == [event_id]
    # the interrupted sleep lasted until the cancel, not its planned hour
    (nap,) = [s for s in detail["steps"] if s["name"] == "nap"]
    assert nap["interrupted"] == "Sleeping" and nap["ended_ms"] == detail["run"]["ended_ms"]


async def test_internal_events_are_kept_out_of_the_users_list(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: CallError("no", {"name": "Error", "message": "no"}, False))
    await engine.send({"order": 17}, name="shop/order.placed")
    await engine.send()
    await engine.run_until_idle()  # a failed run's end stores inngest/function.failed
    read = engine.executor.read
    mine = await read.events_page(None, None, 50)
    assert {e["name"] for e in mine.rows} == {"shop/order.placed", "test/go"}
    everything = await read.events_page(None, None, 50, internal=True)
    assert "inngest/function.failed" in {e["name"] for e in everything.rows}
    found = await read.events_page(None, None, 50, search=parse_search("data.order = 17"))
    assert [e["name"] for e in found.rows] == ["shop/order.placed"] and found.total == 1


async def test_a_step_record_keeps_no_more_than_its_attempts(engine: Engine,
                                                             redis: Redis) -> None:
    """The stored record stays JSON the steps API can return (tries is a list)."""
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops(step_run(_h("s"), 1, "s")) if not call.steps
                  else Completed(2))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    raw: Any = await redis.hget(keys.run_steps(run_id), _h("s"))
    record = orjson.loads(raw)
    assert isinstance(record["tries"], list) and len(record["tries"]) == 1
    assert "try" not in record
    assert metrics_store.bucket(0) == 0


async def _index_dump(redis: Redis) -> dict[str, Any]:
    out = {}
    patterns = [p for shard in keys.shards() for p in (
        f"{keys.prefix(shard)}:search:*", f"{keys.prefix(shard)}:runs:status:*",
        f"{keys.prefix(shard)}:runs:fs:*", keys.events_user(shard))]
    for pattern in patterns:
        async for key in redis.scan_iter(match=pattern):
            out[key.decode()] = await redis.zrange(key, 0, -1, withscores=True)
    return out


async def test_backfill_writes_the_same_indexes_as_the_scripts(engine: Engine,
                                                               redis: Redis) -> None:
    """A store from before the indexes gets exactly what the run scripts write."""
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        kind = call.event["data"]["kind"]
        if kind == "fail":
            return CallError("no", {"name": "Nope", "message": "no way"}, retriable=False)
        if kind == "sleep":
            return ops({"op": "Sleep", "id": _h("nap"), "name": "nap", "opts": {"duration": "1h"}})
        return Completed({"summary": {"tokens": 12, "text": "all good"}})

    engine.answer(answer)
    for i, kind in enumerate(("ok", "fail", "sleep", "ok")):
        await engine.send({"kind": kind, "user_id": i, "note": f"word{i}"})
        engine.clock.advance(1_000)
    await engine.send({"x": 1}, name="shop/other")
    await engine.run_until_idle()
    written = await _index_dump(redis)
    assert written and any(":search:r:n:output" in k for k in written)
    for key in written:
        await redis.delete(key)
    from executor.backfill import backfill

    runs, events = await backfill(redis, batch=2)
    assert runs == 4 and events == await total(redis, keys.events) >= 6
    assert await _index_dump(redis) == written
