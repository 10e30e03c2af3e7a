"""The read model on a store of three shards (fakeredis): every list, filter, search, count
and statistic gives what one index would, the runs and events being spread over the shards
by their ids (`keys.shard_of`: `run0000007` lives in shard 7 % 3 = 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import orjson
import pytest
from redis.asyncio import Redis

from executor import keys
from executor.read_model import ReadModel, RunQuery, parse_search

from .test_read_model import FUNCTIONS, NOW, _run_id, newest_first, seed, walk


@pytest.fixture(autouse=True)
def three_shards() -> Iterator[None]:
    keys.configure(3)
    try:
        yield
    finally:
        keys.configure(1)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client: Redis = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


async def _per_shard(redis: Redis, index: Any) -> list[int]:
    return [int(await redis.zcard(index(shard))) for shard in keys.shards()]


async def test_pages_across_shards_keep_one_index_order_with_score_ties(redis: Redis) -> None:
    seeded = await seed(redis, 237, score=lambda i: NOW + i // 5)  # five runs per ms
    assert all(n > 70 for n in await _per_shard(redis, keys.runs))
    read = ReadModel(redis)
    for limit in (50, 7, 1):
        assert await walk(read, RunQuery(), limit) == newest_first(seeded)
    page = await read.runs_page(RunQuery(), None, 10)
    assert page.total == 237 and page.examined == 10


async def test_a_cursor_inside_a_tie_continues_in_every_shard(redis: Redis) -> None:
    seeded = await seed(redis, 30, score=lambda i: NOW)  # one score: order by id only
    read = ReadModel(redis)
    first = await read.runs_page(RunQuery(), None, 4)
    second = await read.runs_page(RunQuery(), first.next_cursor, 4)
    order = newest_first(seeded)
    assert [r["run_id"] for r in first.rows + second.rows] == order[:8]
    gone = first.rows[-1]["run_id"]  # the cursor's run goes: the page is still exact
    await redis.zrem(keys.runs(keys.shard_of(gone)), gone)
    again = await read.runs_page(RunQuery(), first.next_cursor, 4)
    assert [r["run_id"] for r in again.rows] == order[4:8]


async def test_time_range_and_totals_over_shards(redis: Redis) -> None:
    seeded = await seed(redis, 100)
    query = RunQuery(since_ms=NOW + 20, until_ms=NOW + 69)
    read = ReadModel(redis)
    assert await walk(read, query, 15) == [r for r in newest_first(seeded)
                                           if 20 <= int(r[3:]) <= 69]
    assert (await read.runs_page(query, None, 15)).total == 50


async def test_status_and_function_filters_merge_the_shards(redis: Redis) -> None:
    statuses = ["Completed", "Failed", "Running", "Cancelled"]
    seeded = await seed(redis, 240, status=lambda i: statuses[i % 4])
    read = ReadModel(redis)
    order = newest_first(seeded)
    cases: list[tuple[RunQuery, list[str]]] = [
        (RunQuery(function_id="app-beta", status="Failed"),
         [r for r in order if int(r[3:]) % 3 == 1 and int(r[3:]) % 4 == 1]),
        (RunQuery(status="Running"), [r for r in order if int(r[3:]) % 4 == 2]),
        (RunQuery(status="Cancelled"), [r for r in order if int(r[3:]) % 4 == 3]),
        (RunQuery(function_id="app-gamma"), [r for r in order if int(r[3:]) % 3 == 2]),
        (RunQuery(function_id="app-alpha", status="Running"),
         [r for r in order if int(r[3:]) % 3 == 0 and int(r[3:]) % 4 == 2]),
    ]
    for query, wanted in cases:
        assert {keys.shard_of(r) for r in wanted} == {0, 1, 2}, query
        assert await walk(read, query, 9) == wanted, query
        assert (await read.runs_page(query, None, 9)).total == len(wanted), query
    ids, total = await read.run_ids_matching(RunQuery(status="Failed"), 25)
    assert ids == [r for r in order if int(r[3:]) % 4 == 1][:25] and total == 60


async def test_search_reads_every_shard(redis: Redis) -> None:
    await seed(redis, 90, data=lambda i: {"user_id": i % 30, "name": f"Ada {i}"})
    read = ReadModel(redis)

    async def ids(text: str, **extra: Any) -> list[int]:
        got = await walk(read, RunQuery(search=parse_search(text), **extra), 2)
        page = await read.runs_page(RunQuery(search=parse_search(text), **extra), None, 2)
        assert page.total == len(got)
        return sorted(int(r[3:]) for r in got)

    assert await ids("data.user_id = 7") == [7, 37, 67]  # all in shard 1
    assert await ids("data.user_id = 7 or data.user_id = 8 or data.user_id = 9") == [
        7, 8, 9, 37, 38, 39, 67, 68, 69]  # shards 1, 2, 0
    assert await ids("data.user_id >= 29") == [29, 59, 89]
    assert await ids("ada 45") == [45]
    assert await ids("ADA 4*") == [4, *range(40, 50)]  # `word*` in every shard's words
    assert await ids("data.user_id = 7", function_id="app-beta") == [7, 37, 67]
    assert len(await ids("data.user_id != 7")) == 87
    assert await ids("data.user_id != 7", status="Completed", since_ms=NOW + 60) == [
        i for i in range(60, 90) if i != 67]


async def test_recent_and_live_runs_merge_the_shards(redis: Redis) -> None:
    await seed(redis, 12)
    read = ReadModel(redis)
    assert [r["run_id"] for r in await read.recent_runs(4)] == [
        _run_id(i) for i in (11, 10, 9, 8)]
    fresh = await read.runs_after(NOW + 20, set(), RunQuery(), limit=5)  # lookback: 5 s
    assert [r["run_id"] for r in fresh] == [_run_id(i) for i in range(5)]
    seen = {_run_id(i) for i in range(10)}
    assert [r["run_id"] for r in await read.runs_after(NOW, seen, RunQuery())] == [
        _run_id(10), _run_id(11)]


async def test_stalled_runs_are_listed_from_every_shard(redis: Redis) -> None:
    await seed(redis, 9, status=lambda i: "Running")
    stalled = [_run_id(i) for i in (2, 3, 4, 7)]  # shards 2, 0, 1, 1
    for at, run_id in enumerate(stalled):
        await redis.zadd(keys.runs_stalled(keys.shard_of(run_id)), {run_id: NOW + 100 + at})
        await redis.hset(keys.run(run_id), "stalled_since", NOW + 100 + at)
    page = await ReadModel(redis).runs_page(RunQuery(stalled=True), None, 3)
    assert [r["run_id"] for r in page.rows] == stalled[::-1][:3] and page.total == 4
    assert all(r["stalled"] for r in page.rows)


async def test_events_pages_and_their_runs_in_other_shards(redis: Redis) -> None:
    await seed(redis, 30)
    # the event of run 5 (shard 2) also started runs in shards 0 and 1
    extra = [_run_id(1000), _run_id(1001)]  # shards 0 and 1 (their last digits)
    for run_id in extra:
        await redis.hset(keys.run(run_id), mapping={"run_id": run_id, "function_id": "other",
                                                    "status": "Running", "started_at": NOW})
        await redis.rpush(keys.event_runs("ev0000005", keys.shard_of(run_id)), run_id)
    read = ReadModel(redis)
    page = await read.events_page(None, None, 10)
    assert [e["id"] for e in page.rows] == [f"ev{i:07d}" for i in range(29, 19, -1)]
    assert page.total == 30
    second = await read.events_page(None, page.next_cursor, 10)
    assert [e["id"] for e in second.rows] == [f"ev{i:07d}" for i in range(19, 9, -1)]
    named = await read.events_page("test/event-0", None, 4)
    assert [e["id"] for e in named.rows] == ["ev0000028", "ev0000026", "ev0000024",
                                             "ev0000022"] and named.total == 15
    found = await read.events_page(None, None, 10, search=parse_search("data.i = 5"))
    row = found.rows[0]
    assert [e["id"] for e in found.rows] == ["ev0000005"] and row["run_count"] == 3
    assert {r["run_id"] for r in row["runs"]} == {_run_id(5), *extra}
    links = await read.event_links("ev0000005")
    assert {r["run_id"] for r in links["started"]} == {_run_id(5), *extra}
    assert {r["run_id"] for r in await read.event_runs("ev0000005")} == {_run_id(5), *extra}
    assert [e["id"] for e in await read.events(None, 3)] == ["ev0000029", "ev0000028",
                                                             "ev0000027"]
    fresh = await read.events_after(NOW + 25, set(), None)
    assert [e["id"] for e in fresh][-1] == "ev0000029"


async def test_function_counters_and_backlog_are_summed_over_shards(redis: Redis) -> None:
    fn = FUNCTIONS[0]
    await redis.hset(keys.FUNCTIONS, fn, orjson.dumps({"app_id": "app", "config": {"id": fn}}))
    minute = NOW // 60_000
    for shard, (started, completed, failed) in enumerate([(3, 2, 1), (4, 0, 4), (0, 1, 0)]):
        fields = {"started": started, "Completed": completed, "Failed": failed, "e10": 1}
        await redis.hset(keys.stats_minute(fn, minute, shard),
                         mapping={k: v for k, v in fields.items() if v})
        await redis.hset(keys.stats_hour(fn, NOW // 3_600_000, shard),
                         mapping={k: v for k, v in fields.items() if v})
    for shard, due in ((0, NOW - 500), (2, NOW - 900), (2, NOW - 100)):
        item_id = f"run{due}:{shard}"
        queue = keys.queue(shard)
        await redis.hset(queue.items, item_id, orjson.dumps({"id": item_id, "fn_id": fn}))
        await redis.zadd(queue.ready, {item_id: due})
    found = await ReadModel(redis).function_metrics_many(NOW, ("1h", "24h"))
    for window in ("1h", "24h"):
        entry = found[window]["functions"][fn]
        assert entry["started"] == 7 and entry["hour"] == 7
        assert entry["ended"]["Completed"] == 3 and entry["failed"] == 5
        assert entry["exec"]["count"] == 3
        assert entry["backlog"] == {"count": 3, "oldest_ms": NOW - 900, "age_ms": 900}
    only = await ReadModel(redis).function_metrics(NOW, "24h", fn)
    assert only["functions"][fn]["hour"] == 7
