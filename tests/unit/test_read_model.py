"""The dashboard's read model: cursor paging over `il:runs`, filters and search, live reads,
run detail, events and function stats (fakeredis), plus paging cost with 100,000 runs on a
real redis-server (commands counted by the server)."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import orjson
import pytest
from redis.asyncio import Redis

from dashboard import view
from executor import indexes, keys
from executor.read_model import ReadModel, RunQuery, event_head, parse_search, views

from ..procs import RedisServer

NOW = 1_800_000_000_000
FUNCTIONS = ["app-alpha", "app-beta", "app-gamma"]


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client: Redis = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


def _run_id(i: int) -> str:
    return f"run{i:07d}"


async def seed(redis: Redis, n: int, *, score: Any = None, fn: Any = None, status: Any = None,
               data: Any = None, start: int = 0, chunk: int = 5000) -> list[tuple[str, int]]:
    """`n` runs (and one event each), like ingest.lua writes them. Returns (id, score)."""
    out = []
    for base in range(start, start + n, chunk):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(base, min(base + chunk, start + n)):
                run_id = _run_id(i)
                event_id = f"ev{i:07d}"
                at = score(i) if score else NOW + i
                st = status(i) if status else "Completed"
                event: dict[str, Any] = {"name": f"test/event-{i % 2}", "data": data(i) if data else {"i": i},
                         "id": event_id, "ts": at, "user": {}}
                fields: dict[str, Any] = {"run_id": run_id, "function_id": fn(i) if fn else FUNCTIONS[i % 3],
                          "app_id": "app", "event_id": event_id, "status": st,
                          "started_at": at, "event": orjson.dumps(event),
                          "events": orjson.dumps([event])}
                if st != "Running":
                    fields["ended_at"] = at + 100 + i % 50
                shard, event_shard = keys.shard_of(run_id), keys.shard_of(event_id)
                pipe.hset(keys.run(run_id), mapping=fields)  # type: ignore[arg-type]
                pipe.zadd(keys.runs(shard), {run_id: at})
                pipe.zadd(keys.runs_of_function(fields["function_id"], shard), {run_id: at})
                out.append((run_id, at))
                pipe.set(keys.event(event_id), orjson.dumps({**event, "internal_id": event_id}))
                pipe.zadd(keys.events(event_shard), {event_id: at})
                pipe.zadd(keys.events_by_name(event["name"], event_shard), {event_id: at})
                pipe.rpush(keys.event_runs(event_id, shard), run_id)
                index(pipe, run_id, fields["function_id"], st, at, event, event_id)
            await pipe.execute()
    return out


def index(pipe: Any, run_id: str, fn: str, status: str, at: int, event: dict[str, Any],
          event_id: str) -> None:
    """The indexes ingest.lua and lib_end_run.lua write for a run and its event (an
    engine test checks those scripts write them; here they are seeded directly), each in
    the shard of its run (event)."""
    shard, event_shard = keys.shard_of(run_id), keys.shard_of(event_id)
    if status == "Running":
        pipe.zadd(keys.runs_running(shard), {run_id: at})
    else:
        pipe.zadd(keys.runs_by_status(status, shard), {run_id: at})
    pipe.zadd(keys.runs_of_function_status(fn, status, shard), {run_id: at})
    for key, score, member in indexes.entries(indexes.run_document(event), indexes.RUNS, shard):
        pipe.zadd(key, {member or run_id: float(score) if score else at})
    if not indexes.is_internal(event.get("name")):
        pipe.zadd(keys.events_user(event_shard), {event_id: at})
        for key, score, member in indexes.entries(indexes.event_document(event), indexes.EVENTS,
                                                event_shard):
            pipe.zadd(key, {member or event_id: float(score) if score else at})


def newest_first(seeded: list[tuple[str, int]]) -> list[str]:
    """The zset's reverse order: score descending, then member descending."""
    return [r for r, _ in sorted(seeded, key=lambda x: (x[1], x[0]), reverse=True)]


async def walk(read: ReadModel, query: RunQuery, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        page = await read.runs_page(query, cursor, limit)
        seen += [r["run_id"] for r in page.rows]
        if not page.next_cursor:
            return seen
        cursor = page.next_cursor
    raise AssertionError("paging did not end")


# -- paging ------------------------------------------------------------------------------------
async def test_pages_walk_every_run_once_newest_first_with_score_ties(redis: Redis) -> None:
    seeded = await seed(redis, 237, score=lambda i: NOW + i // 3)  # three runs per ms
    read = ReadModel(redis)
    assert await walk(read, RunQuery(), 50) == newest_first(seeded)
    assert await walk(read, RunQuery(), 7) == newest_first(seeded)


async def test_runs_started_between_pages_do_not_shift_the_next_page(redis: Redis) -> None:
    seeded = await seed(redis, 120)
    read = ReadModel(redis)
    first = await read.runs_page(RunQuery(), None, 50)
    await seed(redis, 30, start=1000)  # newer runs arrive while the user reads page 1
    second = await read.runs_page(RunQuery(), first.next_cursor, 50)
    expected = newest_first(seeded)
    assert [r["run_id"] for r in first.rows] == expected[:50]
    assert [r["run_id"] for r in second.rows] == expected[50:100]


async def test_cursor_of_a_vanished_run_falls_back_to_its_score(redis: Redis) -> None:
    seeded = await seed(redis, 60)
    read = ReadModel(redis)
    first = await read.runs_page(RunQuery(), None, 20)
    assert first.next_cursor is not None
    gone = first.rows[-1]["run_id"]
    await redis.zrem(keys.runs(keys.shard_of(gone)), gone)
    await redis.delete(keys.run(first.rows[-1]["run_id"]))
    second = await read.runs_page(RunQuery(), first.next_cursor, 20)
    assert [r["run_id"] for r in second.rows] == newest_first(seeded)[20:40]


async def test_garbage_cursor_starts_at_the_newest(redis: Redis) -> None:
    seeded = await seed(redis, 5)
    page = await ReadModel(redis).runs_page(RunQuery(), "not-a-cursor", 10)
    assert [r["run_id"] for r in page.rows] == newest_first(seeded)


async def test_time_range_bounds_the_pages(redis: Redis) -> None:
    seeded = await seed(redis, 100)
    read = ReadModel(redis)
    query = RunQuery(since_ms=NOW + 20, until_ms=NOW + 69)
    got = await walk(read, query, 15)
    assert got == [r for r in newest_first(seeded) if 20 <= int(r[3:]) <= 69]


async def test_rows_are_light_and_named_from_the_event_head(redis: Redis) -> None:
    await seed(redis, 3, data=lambda i: {"blob": "x" * 300_000, "i": i})
    page = await ReadModel(redis).runs_page(RunQuery(), None, 10)
    row = page.rows[0]
    assert row["event_name"] == "test/event-0"
    assert row["duration_ms"] == 102
    assert row["started_at"].endswith("Z") and row["function_id"] == "app-gamma"
    assert "event" not in row  # the payload is never part of a list row


# -- filters and search ---------------------------------------------------------------------------
async def test_filter_by_function_and_status(redis: Redis) -> None:
    statuses = ["Completed", "Failed", "Running", "Cancelled"]
    seeded = await seed(redis, 200, status=lambda i: statuses[i % 4])
    read = ReadModel(redis)
    query = RunQuery(function_id="app-beta", status="Failed")
    got = await walk(read, query, 10)
    assert got == [r for r in newest_first(seeded)
                   if int(r[3:]) % 3 == 1 and int(r[3:]) % 4 == 1]
    page = await read.runs_page(query, None, 10)
    assert all(r["status"] == "Failed" and r["function_id"] == "app-beta" for r in page.rows)
    assert all(r["event_name"] for r in page.rows)


async def test_search_by_event_field_and_free_text(redis: Redis) -> None:
    await seed(redis, 90, data=lambda i: {"user_id": i % 30, "name": f"Ada {i}",
                                          "tags": ["x", f"t{i}"]})
    read = ReadModel(redis)

    async def ids(text: str, **extra: Any) -> list[int]:
        got = await walk(read, RunQuery(search=parse_search(text), **extra), 20)
        page = await read.runs_page(RunQuery(search=parse_search(text), **extra), None, 20)
        assert page.total == len(got)
        return sorted(int(r[3:]) for r in got)

    assert await ids("data.user_id = 7") == [7, 37, 67]
    assert await ids("event.data.user_id == 7") == [7, 37, 67]
    assert await ids('data.user_id = "7"') == [7, 37, 67]  # a string matches the number
    assert await ids("data.user_id = 7 and data.name = 'Ada 37'") == [37]
    assert await ids("data.tags.1 = t88") == [88]
    assert await ids("data.tags = t88") == [88]  # any element of a list
    assert await ids("data.user_id >= 29") == [29, 59, 89]
    assert await ids("ada 45") == [45]  # free text: whole words, case-insensitive
    assert await ids("ADA t4*") == [4, *range(40, 50)]  # `word*`: words starting with it
    assert await ids("data.user_id = 7", function_id="app-beta") == [7, 37, 67]  # i % 3 == 1
    assert await ids("data.user_id = 7", function_id="app-alpha") == []
    assert await ids("data.missing = 1") == []
    assert len(await ids("data.missing != 1")) == 90
    assert await ids("data.user_id = 7 or data.user_id = 8") == [7, 8, 37, 38, 67, 68]
    assert await ids("(data.user_id = 7 or t8) and data.name != 'Ada 37'") == [7, 8, 67]


async def test_a_rare_match_is_found_at_once_with_its_count(redis: Redis) -> None:
    await seed(redis, 400, data=lambda i: {"rare": i in (5, 10, 250)})
    read = ReadModel(redis)
    query = RunQuery(search=parse_search("data.rare = true"))
    page = await read.runs_page(query, None, 2)
    assert [r["run_id"] for r in page.rows] == [_run_id(250), _run_id(10)]
    assert page.total == 3 and not page.partial and page.next_cursor
    rest = await read.runs_page(query, page.next_cursor, 2)
    assert [r["run_id"] for r in rest.rows] == [_run_id(5)] and rest.next_cursor is None
    assert rest.total == 3
    ranged = RunQuery(search=parse_search("data.rare = true"), since_ms=NOW + 6,
                      until_ms=NOW + 300)
    assert [r["run_id"] for r in (await read.runs_page(ranged)).rows] == [
        _run_id(250), _run_id(10)]


async def test_a_full_page_of_matches_gives_an_exact_cursor(redis: Redis) -> None:
    seeded = await seed(redis, 100, status=lambda i: "Failed" if i % 2 else "Completed")
    got = await walk(ReadModel(redis), RunQuery(status="Failed"), 6)
    assert got == [r for r in newest_first(seeded) if int(r[3:]) % 2]
    page = await ReadModel(redis).runs_page(RunQuery(status="Failed"), None, 6)
    assert page.total == 50


def test_parse_search() -> None:
    assert parse_search("") is None and parse_search("   ") is None

    def hit(text: str, value: Any, prefix: str = "") -> bool:
        search = parse_search(text)
        assert search is not None
        return search.matches(indexes.document(value, prefix))

    search = parse_search("data.user_id = 42")
    assert search is not None and search.clauses[0].path == "data.user_id"
    assert hit("data.user_id = 42", {"data": {"user_id": 42}})
    assert hit("data.user_id = 42", {"data": {"user_id": "42"}})
    assert not hit("data.user_id = 42", {"data": {"user_id": 420}})
    assert not hit("data.user_id = 42", {"data": {}})
    assert hit("data.ok = true", {"data": {"ok": True}})
    assert not hit("data.ok = true", {"data": {"ok": 1}})
    assert hit('data.user.email = "a@b.c"', {"data": {"user": {"email": "a@b.c"}}})
    assert hit("name = shop/order.placed", {"name": "shop/order.placed", "data": {}})
    text = parse_search("<script>")
    assert text is not None and not text.clauses
    assert hit("<script>", {"data": {"html": "<script>alert(1)</script>"}})
    assert hit('say "hi"', {"data": {"msg": 'they say "HI"'}})
    mixed = parse_search("a = 1 and b")
    assert mixed is not None and len(mixed.clauses) == 1  # a clause and free text
    assert hit("data.n < 10 and data.n > 2", {"data": {"n": 3}})
    assert not hit("data.n < 10 and data.n > 2", {"data": {"n": "x"}})
    compared = parse_search("data.s > b")
    assert compared is not None and compared.error == "data.s > b: > compares numbers"
    assert hit("output.summary.tokens > 100", {"summary": {"tokens": 101}}, "output")
    assert hit('error.name = "RateLimitError"', {"name": "RateLimitError"}, "error")
    assert hit("x = 1 || y = 2", {"y": 2}) and not hit("x = 1 && y = 2", {"y": 2})
    unbalanced = parse_search("(a = 1")
    assert unbalanced is not None and not unbalanced.clauses  # read as free text


def test_event_head_parses_name_and_data_from_the_first_bytes() -> None:
    raw = orjson.dumps({"name": 'odd "name" ü', "data": {"a": [1, 2]}, "id": "e1", "ts": 1})
    assert event_head(raw) == ('odd "name" ü', '{"a":[1,2]}', True)
    big = orjson.dumps({"name": "big", "data": {"blob": "é" * 5000}})
    name, preview, complete = event_head(big[:views.EVENT_HEAD_BYTES])
    assert name == "big" and preview.startswith('{"blob":"éé') and not complete
    assert event_head(None) == (None, "", True)
    assert event_head(b'{"data":{}}') == (None, "", True)


# -- live reads ----------------------------------------------------------------------------------
async def test_runs_after_sees_late_writes_within_the_lookback(redis: Redis) -> None:
    await seed(redis, 10)
    read = ReadModel(redis)
    fresh = await read.runs_after(NOW + 5, set(), RunQuery())
    assert [r["run_id"] for r in fresh] == [_run_id(i) for i in range(10)]  # lookback 5 s
    seen = {r["run_id"] for r in fresh}
    assert await read.runs_after(NOW + 5, seen, RunQuery()) == []
    # a run committed late with an older score is still seen
    await seed(redis, 1, start=50, score=lambda i: NOW + 3)
    late = await read.runs_after(NOW + 9, seen, RunQuery())
    assert [r["run_id"] for r in late] == [_run_id(50)]
    only = await read.runs_after(NOW, set(), RunQuery(function_id="app-beta",
                                                      search=parse_search("data.i = 4")))
    assert [r["run_id"] for r in only] == [_run_id(4)]


async def test_events_page_lists_runs_and_previews(redis: Redis) -> None:
    await seed(redis, 30, data=lambda i: {"html": "<b>" * (2000 if i == 29 else 1)})
    read = ReadModel(redis)
    page = await read.events_page(None, None, 10)
    assert [e["id"] for e in page.rows] == [f"ev{i:07d}" for i in range(29, 19, -1)]
    top = page.rows[0]
    assert top["name"] == "test/event-1" and top["truncated"] and top["bytes"] > 6000
    assert top["runs"] == [{"run_id": _run_id(29), "function_id": "app-gamma",
                            "status": "Completed"}]
    assert page.rows[1]["preview"] == '{"html":"<b>"}' and not page.rows[1]["truncated"]
    second = await read.events_page(None, page.next_cursor, 10)
    assert [e["id"] for e in second.rows] == [f"ev{i:07d}" for i in range(19, 9, -1)]
    named = await read.events_page("test/event-0", None, 100)
    assert len(named.rows) == 15 and named.next_cursor is None
    fresh = await read.events_after(NOW + 25, set(), None)
    assert [e["id"] for e in fresh][-1] == "ev0000029"


# -- one run --------------------------------------------------------------------------------------
async def _run_with_steps(redis: Redis, status: str = "Running") -> str:
    run_id = "r-detail"
    event = {"name": "expense/submitted", "data": {"request_id": "x"}, "id": "e1", "ts": NOW,
             "user": {}}
    await redis.hset(keys.run(run_id), mapping={
        "run_id": run_id, "function_id": "fn", "app_id": "app", "event_id": "e1",
        "status": status, "started_at": NOW, "seq": 3, "event": orjson.dumps(event),
        "events": orjson.dumps([event]), **({"ended_at": NOW + 9000,
                                              "output": orjson.dumps({"error": "x"})}
                                             if status != "Running" else {})})
    records = {
        "h1": {"id": "h1", "name": "first", "op": "StepRun", "status": "Completed",
               "attempts": 3, "started_at": NOW + 10, "ended_at": NOW + 500},
        "h2": {"id": "h2", "name": "nap", "op": "Sleep", "status": "Sleeping", "attempts": 1,
               "started_at": NOW + 600, "ended_at": NOW + 1600, "until": NOW + 1600},
        "h3": {"id": "h3", "name": "approval", "op": "WaitForEvent", "status": "Waiting",
               "attempts": 1, "started_at": NOW + 1700, "ended_at": NOW + 86_400_000,
               "waiting_for": "approval/decided", "expression": "async.data.id == event.data.id"},
        "h4": {"id": "h4", "name": "flaky", "op": "StepRun", "status": "Retrying", "attempts": 2,
               "started_at": NOW + 1800, "ended_at": NOW + 1900, "retry_at": NOW + 60_000,
               "error": {"name": "Error", "message": "boom"}},
    }
    await redis.hset(keys.run_steps(run_id),
                     mapping={k: orjson.dumps(v) for k, v in records.items()})
    await redis.hset(keys.run_memos(run_id), mapping={"h1": orjson.dumps({"data": {"ok": 1}}),
                                                      "h2": b"null"})
    await redis.rpush(keys.run_stack(run_id), "h1", "h2")
    queue = keys.queue_of(run_id)
    await redis.hset(queue.items, f"{run_id}:3", orjson.dumps(
        {"id": f"{run_id}:3", "run_id": run_id, "fn_id": "fn", "attempt": 1, "max_attempts": 4}))
    await redis.zadd(queue.ready, {f"{run_id}:3": NOW + 60_000})
    return run_id


async def test_run_detail_has_steps_queue_state_and_waiting_reasons(redis: Redis) -> None:
    run_id = await _run_with_steps(redis)
    now = NOW + 5000
    detail = await ReadModel(redis).run_detail(run_id, now)
    assert detail is not None
    steps = {s["name"]: s for s in detail["steps"]}
    assert [s["name"] for s in detail["steps"]][:2] == ["first", "nap"]  # stack order first
    assert steps["first"]["output"] == {"ok": 1} and steps["first"]["has_output"]
    assert steps["nap"]["status"] == "Completed"  # the sleep is over
    assert steps["approval"]["status"] == "Waiting"
    assert steps["flaky"]["error"] == {"name": "Error", "message": "boom"}
    assert detail["queue"] == {"item_id": f"{run_id}:3", "attempt": 1, "max_attempts": 4,
                               "step_id": None, "state": "scheduled", "due_ms": NOW + 60_000}
    assert [s["name"] for s in detail["rerunnable"]] == ["first", "nap"]
    reasons = view.waiting_reasons(detail, now)
    assert any("approval/decided" in r and "async.data.id == event.data.id" in r
               for r in reasons)
    assert any("flaky" in r and "boom" in r for r in reasons)
    lanes = {lane.label: lane for lane in view.timeline(detail, now).lanes}
    assert lanes["first"].segments[0].kind == "Completed retried"
    assert lanes["flaky"].segments[1].kind == "Backoff"
    assert lanes["approval"].segments[0].kind == "Waiting"
    assert all(0 <= s.left <= 100 and 0 < s.width <= 100
               for lane in lanes.values() for s in lane.segments)


async def test_a_run_that_ended_shows_its_pending_steps_as_interrupted(redis: Redis) -> None:
    run_id = await _run_with_steps(redis, status="Cancelled")
    detail = await ReadModel(redis).run_detail(run_id, NOW + 20_000)
    assert detail is not None
    steps = {s["name"]: s for s in detail["steps"]}
    assert steps["approval"]["status"] == "Cancelled"
    assert steps["approval"]["interrupted"] == "Waiting"
    assert detail["queue"] == {"state": None}
    assert view.waiting_reasons(detail, NOW + 20_000) == []


async def test_run_version_moves_when_a_step_record_changes(redis: Redis) -> None:
    run_id = await _run_with_steps(redis)
    read = ReadModel(redis)
    before = await read.run_version(run_id)
    assert before is not None and before.startswith("Running.")
    assert await read.run_version(run_id) == before
    await redis.hset(keys.run_steps(run_id), "h4", orjson.dumps({"status": "Completed"}))
    assert await read.run_version(run_id) != before
    assert await read.run_version("nope") is None


async def test_existing_api_reads_keep_their_shapes(redis: Redis) -> None:
    await seed(redis, 3)
    read = ReadModel(redis)
    run = await read.run(_run_id(1))
    assert run is not None and set(run) == {"run_id", "function_id", "app_id", "event_id",
                                            "status", "output", "run_started_at", "ended_at",
                                            "last_error", "waiting_reason",
                                            # agent operations (issue 13): added fields
                                            "usage", "stalled", "trace_id"}
    assert [r["run_id"] for r in await read.recent_runs(2)] == [_run_id(2), _run_id(1)]
    event = await read.event("ev0000001")
    assert event is not None and event["name"] == "test/event-1"
    assert [e["id"] for e in await read.events(None, 2)] == ["ev0000002", "ev0000001"]
    assert [r["run_id"] for r in await read.event_runs("ev0000001")] == [_run_id(1)]


def test_view_helpers() -> None:
    assert view.duration(850) == "850 ms" and view.duration(3200) == "3.2 s"
    assert view.duration(125_000) == "2 m 5 s" and view.duration(3 * 86_400_000) == "3 d"
    big = view.pretty({"x": "y" * 10_000})
    assert big.truncated and len(big.text) == view.PREVIEW_CHARS and big.chars > 10_000
    assert view.error_text({"name": "RuntimeError", "message": "no"}) == "RuntimeError: no"


# -- 100,000 runs on a real redis-server -----------------------------------------------------------
@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
    server = RedisServer(tmp_path_factory.mktemp("readmodel"))
    server.start()
    yield server
    server.stop()


# 100,000 runs written server-side (as ingest.lua would, minus events): seconds faster than
# 200,000 commands from the client on a busy 2-core box
SEED_LUA = """
for i = 0, tonumber(ARGV[3]) - 1 do
  local id = string.format('run%07d', i)
  local at = tonumber(ARGV[2]) + i
  local event = cjson.encode({name = 'test/event', data = {i = i}, id = 'ev' .. i, ts = at})
  redis.call('HSET', string.format(ARGV[1], id), 'run_id', id, 'function_id', 'app-alpha',
             'app_id', 'app', 'event_id', 'ev' .. i, 'status', 'Completed', 'started_at', at,
             'ended_at', at + 100, 'event', event)
  redis.call('ZADD', KEYS[1], at, id)
  redis.call('ZADD', KEYS[2], at, id)
  redis.call('ZADD', KEYS[3], i, id)
end
return 1
"""


async def _commands(client: Redis) -> int:
    info = await client.info("stats")
    return int(info["total_commands_processed"])


@pytest.mark.real
async def test_paging_cost_is_flat_with_100k_runs(real_server: RedisServer) -> None:
    client: Redis = Redis.from_url(real_server.url)
    try:
        await client.flushdb()
        await client.config_set("appendonly", "no")  # seeding speed; nothing here is durable
        started = time.perf_counter()
        await client.eval(SEED_LUA, 3, keys.runs(0), keys.runs_by_status("Completed", 0),
                          keys.search_number(indexes.RUNS, "data.i", 0), keys.run("%s"), NOW,
                          100_000)
        seeded = [(_run_id(i), NOW + i) for i in range(100_000)]
        seeding = time.perf_counter() - started
        order = newest_first(seeded)
        read = ReadModel(client)
        costs = []
        for cursor in (None, f"{NOW + 50_000}.{_run_id(50_000)}",
                       f"{NOW + 30}.{_run_id(30)}"):
            before = await _commands(client)
            started = time.perf_counter()
            page = await read.runs_page(RunQuery(), cursor, 50)
            elapsed = time.perf_counter() - started
            costs.append(await _commands(client) - before - 1)  # minus the INFO itself
            assert elapsed < 0.25, f"a page took {elapsed:.3f}s"
            if cursor is None:
                assert [r["run_id"] for r in page.rows] == order[:50]
        # the range from the cursor's score, its count, 2 per row
        assert costs[0] == costs[1] <= 2 + 2 * 50
        assert costs[2] < costs[0]  # the last page is shorter
        # a search reads its index entry, whatever the number of runs
        before = await _commands(client)
        started = time.perf_counter()
        page = await read.runs_page(RunQuery(search=parse_search("data.i = 12"),
                                             status="Completed"), None, 50)
        elapsed = time.perf_counter() - started
        spent = await _commands(client) - before - 1
        assert [r["run_id"] for r in page.rows] == [_run_id(12)] and page.total == 1
        assert spent <= 6, spent
        print(f"seeded 100k runs in {seeding:.1f}s; page costs {costs} commands; "
              f"a search: {spent} commands, {elapsed * 1000:.1f} ms")
    finally:
        await client.flushdb()
        await client.aclose()


async def test_function_filter_pages_through_its_own_index(redis: Redis) -> None:
    seeded = await seed(redis, 300)
    read = ReadModel(redis)
    wanted = [r for r, _ in sorted(seeded, key=lambda x: -x[1])
              if int(r[-7:]) % 3 == FUNCTIONS.index(FUNCTIONS[0])]
    page = await read.runs_page(RunQuery(function_id=FUNCTIONS[0]), limit=20)
    assert [r["run_id"] for r in page.rows] == wanted[:20]
    assert page.examined == 20  # read from the function's index: no rows examined and dropped
    second = await read.runs_page(RunQuery(function_id=FUNCTIONS[0]), page.next_cursor, limit=20)
    assert [r["run_id"] for r in second.rows] == wanted[20:40]
