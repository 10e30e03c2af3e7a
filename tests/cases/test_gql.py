"""`POST /v0/gql` edge cases, in-process over fakeredis (the query shapes against real runs
of the official SDKs are in tests/compat): what a running, skipped or unknown run reads
as, output ids, request errors naming what is wrong, and the production guard."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import orjson
import pytest

from executor import keys
from executor.api import create_app
from executor.auth import SESSION_COOKIE
from executor.service import Executor, Settings

NOW = 1_800_000_000_000
EVENT = {"name": "shop/ordered", "data": {"n": 1}, "id": "E1", "ts": NOW, "user": {}}
SIGNING_KEY = "signkey-test-" + "ab" * 32


async def seed_run(redis: Any, run_id: str, status: str, output: Any = None,
                   steps: list[tuple[str, str, Any, str]] | None = None) -> None:
    """A run as the scripts write it; `steps` are (hash, name, memo or ..., status)."""
    fields = {"run_id": run_id, "function_id": "shop-fn", "status": status,
              "started_at": str(NOW), "event": orjson.dumps(EVENT),
              "events": orjson.dumps([EVENT, {**EVENT, "id": "E2"}])}
    if status != "Running":
        fields.update(output=orjson.dumps(output), ended_at=str(NOW + 1500))
    await redis.hset(keys.run(run_id), mapping=fields)
    await redis.rpush(keys.event_runs("E1", keys.shard_of(run_id)), run_id)
    for i, (hashed, name, memo, step_status) in enumerate(steps or []):
        await redis.hset(keys.run_steps(run_id), hashed, orjson.dumps(
            {"id": hashed, "name": name, "op": "StepRun", "status": step_status,
             "attempts": 1, "started_at": NOW + i, "ended_at": NOW + i + 10}))
        if memo is not ...:
            await redis.hset(keys.run_memos(run_id), hashed, orjson.dumps(memo))
            await redis.rpush(keys.run_stack(run_id), hashed)


async def client_for(settings: Settings) -> AsyncIterator[tuple[Any, httpx.AsyncClient, Executor]]:
    redis = fakeredis.FakeAsyncRedis()
    executor = Executor(redis, settings)
    app = create_app(executor, manage_lifecycle=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://executor") as http:
        yield redis, http, executor
    await redis.aclose()


@pytest.fixture
async def dev() -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    async for redis, http, _ in client_for(Settings(run_worker=False)):
        await redis.set(keys.event("E1"), orjson.dumps({**EVENT, "internal_id": "E1"}))
        yield redis, http


async def query(http: httpx.AsyncClient, text: str, status: int = 200,
                **variables: Any) -> dict[str, Any]:
    answer = await http.post("/v0/gql", json={"query": text, "variables": variables})
    assert answer.status_code == status, answer.text
    return dict(answer.json())


async def test_a_running_run_has_no_output_and_its_pending_step_no_output_id(
        dev: tuple[Any, httpx.AsyncClient]) -> None:
    redis, http = dev
    await seed_run(redis, "R1", "Running", steps=[("h1", "fetch", {"data": 1}, "Completed"),
                                                  ("h2", "charge", ..., "Retrying")])
    got = await query(http, """query($id: String!) { run(runID: $id) {
        id functionID status output trace { name status outputID isRoot
        childrenSpans { name stepOp outputID status } } } }""", id="R1")
    run = got["data"]["run"]
    assert run["status"] == "RUNNING" and run["output"] is None
    assert run["trace"]["isRoot"] and run["trace"]["outputID"] is None
    assert run["trace"]["childrenSpans"] == [
        {"name": "fetch", "stepOp": "RUN", "outputID": "R1:h1", "status": "COMPLETED"},
        {"name": "charge", "stepOp": "RUN", "outputID": None, "status": "RUNNING"}]


async def test_the_runs_own_output_id_gives_its_result_or_error(
        dev: tuple[Any, httpx.AsyncClient]) -> None:
    redis, http = dev
    await seed_run(redis, "R2", "Failed", {"name": "MyError", "message": "boom",
                                           "stack": None, "code": "unknown"})
    await seed_run(redis, "R3", "Completed", {"total": 3})
    text = """query($id: String!) { run(runID: $id) { trace { outputID } }
              runTrigger(runID: $id) { IDs payloads isBatch eventName } }"""
    failed = (await query(http, text, id="R2"))["data"]
    assert failed["run"]["trace"]["outputID"] == "R2"
    assert failed["runTrigger"]["IDs"] == ["E1", "E2"] and failed["runTrigger"]["isBatch"]
    assert [orjson.loads(p)["id"] for p in failed["runTrigger"]["payloads"]] == ["E1", "E2"]
    out = """query($o: String!) { runTraceSpanOutputByID(outputID: $o) {
             data error { message name stack } } }"""
    assert (await query(http, out, o="R2"))["data"]["runTraceSpanOutputByID"] == {
        "data": None, "error": {"message": "boom", "name": "MyError", "stack": None}}
    assert (await query(http, out, o="R3"))["data"]["runTraceSpanOutputByID"] == {
        "data": '{"total":3}', "error": None}
    missing = await query(http, out, o="R3:nope")
    assert missing["data"] is None and "no output" in missing["errors"][0]["message"]


async def test_an_events_runs_leave_out_skipped_ones(dev: tuple[Any, httpx.AsyncClient]) -> None:
    redis, http = dev
    await seed_run(redis, "R4", "Completed", "ok")
    await seed_run(redis, "R5", "Skipped", {"message": "rate limited"})
    text = """query($e: ID!) { event(query: {eventId: $e}) { id name totalRuns
              functionRuns { id status output } } }"""
    event = (await query(http, text, e="E1"))["data"]["event"]
    assert event["id"] == "E1" and event["name"] == "shop/ordered"
    assert event["functionRuns"] == [{"id": "R4", "status": "COMPLETED", "output": '"ok"'}]
    assert event["totalRuns"] == 1
    assert (await query(http, text, e="nope"))["data"] == {"event": None}


@pytest.mark.parametrize(("body", "words"), [
    (b"{not json", "body: malformed JSON"),
    (b"[]", "body: must be an object"),
    (b'{"variables": {}}', "query: required"),
    (b'{"query": "{ run(runID: \\"x\\") { id } }", "variables": [1]}', "variables: must be"),
    (b'{"query": "{ run(runID: "}', "Syntax Error"),
    (b'{"query": "query($id: String!) { run(runID: $id) { id } }"}', "$id"),
    (b'{"query": "{ run(runID: \\"x\\") { id secret } }"}', "Cannot query field 'secret'"),
    (b'{"query": "mutation { run }"}', "mutation"),
])
async def test_request_errors_are_4xx_naming_the_problem(
        dev: tuple[Any, httpx.AsyncClient], body: bytes, words: str) -> None:
    _, http = dev
    answer = await http.post("/v0/gql", content=body,
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["errors"][0]["message"]


async def test_production_needs_the_signing_key_or_a_dashboard_session() -> None:
    settings = Settings(run_worker=False, mode="cloud", signing_key=SIGNING_KEY,
                        dashboard_password="pw")
    async for _, http, executor in client_for(settings):
        text = '{ run(runID: "x") { id } }'
        refused = await http.post("/v0/gql", json={"query": text})
        assert refused.status_code == 401 and "error" in refused.json()
        hashed = hashlib.sha256(bytes.fromhex(SIGNING_KEY.split("-", 2)[2])).hexdigest()
        keyed = await http.post("/v0/gql", json={"query": text},
                                headers={"Authorization": f"Bearer {hashed}"})
        assert keyed.status_code == 200 and keyed.json() == {"data": {"run": None}}
        session = await executor.auth.new_session()
        logged_in = await http.post("/v0/gql", json={"query": text},
                                    cookies={SESSION_COOKIE: session})
        assert logged_in.status_code == 200, logged_in.text
