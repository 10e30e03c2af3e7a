"""Issue 10.6: request bodies are capped before they are read (413 with a JSON error, for
`/e/{key}` and `/fn/register` alike, with or without a Content-Length), the number of events
per request is capped, and a large accepted batch reaches Redis as many small script calls,
none of which blocks Redis for long. A real executor (API only) on a real redis-server."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from executor import ingest_chunks, keys

from ..conftest import _keep_logs
from ..procs import Executor, RedisServer

pytestmark = pytest.mark.real

MAX_BYTES = 2_000_000
MAX_EVENTS = 3000


class Api:
    def __init__(self, executor: Executor, redis: RedisServer) -> None:
        self.executor = executor
        self.redis = redis.client()

    def post(self, path: str, content: Any, headers: dict[str, str] | None = None
             ) -> httpx.Response:
        return httpx.post(f"{self.executor.url}{path}", content=content, timeout=60,
                          headers={"Content-Type": "application/json", **(headers or {})})

    def stored_events(self) -> int:
        return int(self.redis.zcard(keys.events(0)))


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    directory: pathlib.Path = tmp_path_factory.mktemp("bounded")
    redis = RedisServer(directory)
    redis.start()
    executor = Executor(directory, redis.url, [], extra=[
        "--no-worker", "--max-request-bytes", str(MAX_BYTES),
        "--max-events-per-request", str(MAX_EVENTS)])
    try:
        executor.start()
        yield Api(executor, redis)
    finally:
        executor.stop()
        redis.stop()
        _keep_logs(directory)


def big_body(size: int) -> bytes:
    return orjson.dumps({"name": "test/big", "data": {"blob": "x" * size}})


@pytest.mark.parametrize("path", ["/e/key", "/fn/register", "/v1/cancellations"])
def test_a_body_over_the_cap_is_refused_before_it_is_read(api: Api, path: str) -> None:
    before = api.stored_events()
    answer = api.post(path, big_body(MAX_BYTES + 10))
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"status": 413, "error": f"body: larger than {MAX_BYTES} bytes, "
                             "the limit of this server (--max-request-bytes)"}
    assert api.stored_events() == before


def test_a_chunked_body_over_the_cap_is_cut_off(api: Api) -> None:
    before = api.stored_events()
    body = big_body(MAX_BYTES + 10)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size shows only while reading
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    answer = api.post("/e/key", chunks())
    assert answer.status_code == 413, answer.text
    assert "larger than" in answer.json()["error"]
    assert api.stored_events() == before


def test_too_many_events_in_one_request(api: Api) -> None:
    before = api.stored_events()
    batch = [{"name": "test/many", "data": {}} for _ in range(MAX_EVENTS + 1)]
    answer = api.post("/e/key", orjson.dumps(batch))
    assert answer.status_code == 400, answer.text
    assert f"{MAX_EVENTS + 1} events, over the limit of {MAX_EVENTS}" in answer.json()["error"]
    assert api.stored_events() == before


def script_arguments(api: Api) -> list[int]:
    """How many arguments each ingest script call had (its keys, all in KEYS, and its JSON),
    from Redis' slow log (which keeps the first 31 and says how many more there were)."""
    counts = []
    for entry in api.redis.slowlog_get(100_000):
        command = entry["command"]
        if command.upper().startswith(b"EVALSHA") and keys.events(0).encode() in command:
            more = re.search(rb"\.\.\. \((\d+) more arguments\)$", command)
            counts.append(31 + int(more.group(1)) if more else len(command.split(b" ")))
    return counts


def test_a_large_batch_is_written_in_small_script_calls(api: Api) -> None:
    register = {"appName": "sink", "url": "http://127.0.0.1:9/api", "functions": [{
        "id": "sink-all", "name": "all", "triggers": [{"event": "test/batch"}],
        "steps": {"step": {"id": "step", "runtime": {"type": "http",
                                                     "url": "http://127.0.0.1:9/api"}}}}]}
    assert api.post("/fn/register", orjson.dumps(register)).status_code == 200
    # log every command: the sizes of the script calls are what bound Redis' busy time
    # (timings would depend on the machine's load)
    api.redis.config_set("slowlog-log-slower-than", 0)
    api.redis.config_set("slowlog-max-len", 100_000)
    api.redis.slowlog_reset()
    batch = [{"name": "test/batch", "data": {"i": i, "pad": "p" * 200}}
             for i in range(MAX_EVENTS)]
    body = orjson.dumps(batch)
    assert len(body) < MAX_BYTES
    answer = api.post("/e/key", body)
    api.redis.config_set("slowlog-log-slower-than", 10_000)
    assert answer.status_code == 200, answer.text
    ids = answer.json()["ids"]
    assert len(ids) == MAX_EVENTS
    counts = script_arguments(api)
    # unsplit, this batch is one call of ~6 MB (events and their runs, ~7 keys each),
    # ~140 ms of Redis; cut, a call holds at most ingest_chunks.MAX_EVENTS events (its
    # byte bound: tests/unit/test_ingest_chunks.py)
    assert len(counts) >= MAX_EVENTS // ingest_chunks.MAX_EVENTS, counts
    assert max(counts) <= 20 * ingest_chunks.MAX_EVENTS, counts
    assert sum(counts) > 5 * MAX_EVENTS, counts  # all of it went through, in pieces
    # every event has its run, the last one included
    for event_id in (ids[0], ids[len(ids) // 2], ids[-1]):
        runs = httpx.get(f"{api.executor.url}/v1/events/{event_id}/runs", timeout=10).json()
        assert [r["function_id"] for r in runs["data"]] == ["sink-all"]
