"""Which checkpoint route our SDK uses, and whether it sends a last step with the function's
end, by what the executor says it takes (wire.FEATURES_HEADER): batches and the fold for an
executor of ours that says so; the per-run route and a saved last step for one of ours that
does not (an earlier version, which could read neither); the per-run route and the fold for
Inngest's (whose JS v4 SDK answers the same)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

import inngest_like as inngest
from inngest_like import wire
from inngest_like._handler import Handler, Request
from tests.procs import free_port


async def _executor_api(hits: list[str]) -> tuple[web.AppRunner, str]:
    async def one(request: web.Request) -> web.Response:
        hits.append("per-run")
        return web.json_response({"status": 200})

    async def batch(request: web.Request) -> web.Response:
        entries = (await request.json())["checkpoints"]
        hits.extend("batch" for _ in entries)
        return web.json_response({"results": [{"status": 200}] * len(entries)})

    app = web.Application()
    app.router.add_post("/v1/checkpoint/{run}/async", one)
    app.router.add_post("/v1/checkpoints", batch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("headers", "route", "folded"), [
    ({"x-inngest-like-call": "r1:1.a", "x-inngest-like-features": wire.FEATURES},
     "batch", True),
    ({"x-inngest-like-call": "r1:1.a"}, "per-run", False),  # ours, earlier
    ({}, "per-run", True),  # Inngest's
])
async def test_the_executor_decides_the_route_and_the_fold(
        headers: dict[str, str], route: str, folded: bool) -> None:
    hits: list[str] = []
    runner, origin = await _executor_api(hits)
    client = inngest.Inngest(app_id="app", is_production=False, api_base_url=origin)

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="a/go"))
    async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
        one = await step.run("one", lambda: 1)
        two = await step.run("two", lambda: 2)
        return one + two

    body = orjson.dumps({"event": {"name": "a/go", "data": {}, "id": "e1", "ts": 1},
                         "events": [], "steps": {}, "use_api": False,
                         "ctx": {"run_id": "r1", "fn_id": "app-f", "attempt": 0,
                                 "stack": {"stack": []}, "disable_immediate_execution": False}})
    try:
        answer = await Handler(client, [f]).call(Request(
            "POST", "http://app/api/inngest?fnId=app-f&stepId=step", {"fnId": "app-f"},
            headers, body))
    finally:
        await client.checkpoint_sessions.close()
        await runner.cleanup()
    if folded:  # "one" checkpointed; "two" comes with the end
        assert hits == [route]
        assert answer.status == 206
        ops = orjson.loads(answer.encoded())  # as sent
        assert [op["op"] for op in ops] == ["StepRun", "RunComplete"]
        assert ops[0]["displayName"] == "two" and ops[0]["data"] == 2
        assert ops[1]["data"] == 3
    else:  # both checkpointed, then the plain end
        assert hits == [route, route]
        assert (answer.status, answer.body) == (200, 3)


async def test_a_value_changed_after_its_step_is_saved_as_the_step_returned_it() -> None:
    sent: list[Any] = []

    async def batch(request: web.Request) -> web.Response:
        entries = (await request.json())["checkpoints"]
        sent.extend(e["steps"][0]["data"] for e in entries)
        return web.json_response({"results": [{"status": 200}] * len(entries)})

    app = web.Application()
    app.router.add_post("/v1/checkpoints", batch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = inngest.Inngest(app_id="app", is_production=False,
                             api_base_url=f"http://127.0.0.1:{port}")

    @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="a/go"))
    async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
        config = await step.run("config", lambda: {"n": 1})
        config["n"] += 1  # before the step is saved: what a replay gives must not change
        return await step.run("use", lambda: config["n"])

    body = orjson.dumps({"event": {"name": "a/go", "data": {}, "id": "e1", "ts": 1},
                         "events": [], "steps": {}, "use_api": False,
                         "ctx": {"run_id": "r1", "fn_id": "app-f", "attempt": 0,
                                 "stack": {"stack": []}, "disable_immediate_execution": False}})
    try:
        answer = await Handler(client, [f]).call(Request(
            "POST", "http://app/api/inngest?fnId=app-f&stepId=step", {"fnId": "app-f"},
            {"x-inngest-like-call": "r1:1.a", "x-inngest-like-features": wire.FEATURES}, body))
    finally:
        await client.checkpoint_sessions.close()
        await runner.cleanup()
    assert sent == [{"n": 1}]
    assert orjson.loads(answer.encoded())[0]["data"] == 2
