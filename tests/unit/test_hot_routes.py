"""Events and checkpoints are served ahead of the router (executor/api.py HotRoutes): the
same answers as the routes they stand in for, in the request's own task (no middleware
spawning one per request), Redis errors as the API's JSON 503, and a body cut short by a
client that left acted on by nobody."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import fakeredis
import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from executor import keys
from executor.api import create_app
from executor.service import Executor, Settings

Message = MutableMapping[str, Any]
RUN = "01HOTROUTESRUN000000000000"


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8288),
            "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8288"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}


async def _post(app: Any, path: str, body: bytes,
                messages: list[Message] | None = None) -> tuple[int, Any]:
    """One request straight into the ASGI app; `messages` replaces the body's delivery."""
    incoming = list(messages or [{"type": "http.request", "body": body, "more_body": False}])
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(_scope(path, body), receive, send)
    return answer["status"], orjson.loads(answer["body"]) if answer["body"] else None


@pytest.fixture
async def executor() -> Executor:
    redis = fakeredis.FakeAsyncRedis()
    built = Executor(redis, Settings(run_worker=False))
    await built.scripts.load_all()
    await redis.hset(keys.run(RUN), mapping={"status": "Running", "function_id": "f"})
    return built


def _checkpoint(step: str) -> bytes:
    return orjson.dumps({"run_id": RUN, "steps": [{"op": "StepRun", "id": step, "data": 1}]})


async def test_events_and_checkpoints_are_handled_in_the_request_task(
        executor: Executor) -> None:
    app = create_app(executor, manage_lifecycle=False)
    seen: list[asyncio.Task[Any] | None] = []
    accept, checkpoint = executor.ingest.accept, executor.state.checkpoint

    async def accept_seen(*args: Any, **kw: Any) -> Any:
        seen.append(asyncio.current_task())
        return await accept(*args, **kw)

    async def checkpoint_seen(*args: Any, **kw: Any) -> Any:
        seen.append(asyncio.current_task())
        return await checkpoint(*args, **kw)

    executor.ingest.accept = accept_seen  # type: ignore[method-assign]
    executor.state.checkpoint = checkpoint_seen  # type: ignore[method-assign]
    status, body = await _post(app, "/e/any-key", orjson.dumps({"name": "a/b", "data": {}}))
    assert status == 200 and len(body["ids"]) == 1
    status, body = await _post(app, f"/v1/checkpoint/{RUN}/async", _checkpoint("s1"))
    assert (status, body) == (200, {"status": 200})
    # a middleware that ran the route in a task of its own would show another task here
    assert seen == [asyncio.current_task()] * 2
    assert await executor.redis.hexists(keys.run_memos(RUN), "s1")


async def test_hot_routes_answer_as_the_routes_did(executor: Executor) -> None:
    app = create_app(executor, manage_lifecycle=False)
    status, body = await _post(app, "/v1/checkpoint/nobody/async", _checkpoint("s1"))
    assert status == 404 and body["error"] == "run nobody is not running"
    status, body = await _post(app, f"/v1/checkpoint/{RUN}/async", b'{"steps": 1}')
    assert status == 400 and body["error"].startswith("steps:")
    status, body = await _post(app, "/e/key", b"{not json")
    assert status == 400 and body["ids"] == []
    # paths beside the two routes still reach the router
    status, _ = await _post(app, f"/v1/checkpoint/{RUN}/async/more", _checkpoint("s1"))
    assert status in (404, 405)


async def test_a_redis_error_on_a_hot_route_is_the_apis_503(executor: Executor) -> None:
    app = create_app(executor, manage_lifecycle=False)

    async def down(*args: Any, **kw: Any) -> Any:
        raise RedisConnectionError("connection refused")

    executor.state.checkpoint = down  # type: ignore[method-assign]
    executor.ingest.accept = down  # type: ignore[method-assign]
    for path, body in ((f"/v1/checkpoint/{RUN}/async", _checkpoint("s1")),
                       ("/e/key", orjson.dumps({"name": "a/b"}))):
        status, answer = await _post(app, path, body)
        assert status == 503 and "storage unavailable" in answer["error"]


async def test_a_checkpoint_cut_short_by_its_client_saves_nothing(executor: Executor) -> None:
    app = create_app(executor, manage_lifecycle=False)
    body = _checkpoint("s1")
    status, answer = await _post(app, f"/v1/checkpoint/{RUN}/async", body, [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"}])
    assert (status, answer) == (0, None)  # nobody to answer
    assert not await executor.redis.hexists(keys.run_memos(RUN), "s1")


async def test_a_batch_of_checkpoints_answers_each_as_its_own_route_would(
        executor: Executor) -> None:
    app = create_app(executor, manage_lifecycle=False)
    other = "01HOTROUTESRUN000000000001"
    await executor.redis.hset(keys.run(other), mapping={"status": "Running", "function_id": "f"})
    body = orjson.dumps({"checkpoints": [
        {"run_id": RUN, "steps": [{"op": "StepRun", "id": "a", "data": 1}]},
        {"run_id": "nobody", "steps": [{"op": "StepRun", "id": "b", "data": 2}]},
        {"run_id": other, "steps": [{"op": "Sleep", "id": "c"}]},
        {"steps": []},
        {"run_id": other, "steps": [{"op": "StepRun", "id": "d", "data": {"x": 4}}]},
    ]})
    status, answer = await _post(app, "/v1/checkpoints", body)
    assert status == 200
    assert answer["results"] == [
        {"status": 200}, {"status": 404, "message": "run nobody is not running"},
        {"status": 400, "message": "checkpoints[2].steps[0].op: only StepRun can be "
                                   "checkpointed"},
        {"status": 400, "message": "checkpoints[3].run_id: must be a run id"},
        {"status": 200}]
    assert orjson.loads(await executor.redis.hget(keys.run_memos(RUN), "a")) == {"data": 1}
    assert orjson.loads(await executor.redis.hget(keys.run_memos(other), "d")) == {
        "data": {"x": 4}}
    assert not await executor.redis.exists(keys.run_memos("nobody"))
    for bad in (b'{"checkpoints": []}', b'{"checkpoints": 1}', b"[1]"):
        status, answer = await _post(app, "/v1/checkpoints", bad)
        assert status == 400 and answer["error"].startswith("checkpoints:")
