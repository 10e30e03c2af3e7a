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
from inngest_like._handler import Handler, Request, Response

from .fake_api import serving

OURS = {"x-inngest-like-call": "r1:1.a", "x-inngest-like-features": wire.FEATURES}
CALL = orjson.dumps({"event": {"name": "a/go", "data": {}, "id": "e1", "ts": 1},
                     "events": [], "steps": {}, "use_api": False,
                     "ctx": {"run_id": "r1", "fn_id": "app-f", "attempt": 0,
                             "stack": {"stack": []}, "disable_immediate_execution": False}})


class FakeExecutor:
    """The executor's two checkpoint routes, noting which took each checkpoint and what."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.saved: list[Any] = []  # the steps' outputs, as they arrived

    async def one(self, request: web.Request) -> web.Response:
        self.hits.append("per-run")
        self.saved.append((await request.json())["steps"][0]["data"])
        return web.json_response({"status": 200})

    async def batch(self, request: web.Request) -> web.Response:
        entries = (await request.json())["checkpoints"]
        self.hits.extend("batch" for _ in entries)
        self.saved.extend(e["steps"][0]["data"] for e in entries)
        return web.json_response({"results": [{"status": 200}] * len(entries)})

    async def call(self, client: inngest.Inngest, fn: Any, headers: dict[str, str]
                   ) -> Response:
        """One call of `fn` (of `client`, whose API is this) with these headers."""
        try:
            return await Handler(client, [fn]).call(Request(
                "POST", "http://app/api/inngest?fnId=app-f&stepId=step", {"fnId": "app-f"},
                headers, CALL))
        finally:
            await client.checkpoint_sessions.close()


async def _calling(make: Any, headers: dict[str, str]) -> tuple[FakeExecutor, Response]:
    """Serve a FakeExecutor, make the function (`make(client)`), call it once."""
    executor = FakeExecutor()
    async with serving({"/v1/checkpoint/{run}/async": executor.one,
                        "/v1/checkpoints": executor.batch}) as origin:
        client = inngest.Inngest(app_id="app", is_production=False, api_base_url=origin)
        answer = await executor.call(client, make(client), headers)
    return executor, answer


@pytest.mark.parametrize(("headers", "route", "folded"), [
    (OURS, "batch", True),
    ({"x-inngest-like-call": "r1:1.a"}, "per-run", False),  # ours, earlier
    ({}, "per-run", True),  # Inngest's
])
async def test_the_executor_decides_the_route_and_the_fold(
        headers: dict[str, str], route: str, folded: bool) -> None:
    def make(client: inngest.Inngest) -> Any:
        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="a/go"))
        async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
            one = await step.run("one", lambda: 1)
            two = await step.run("two", lambda: 2)
            return one + two

        return f

    executor, answer = await _calling(make, headers)
    hits = executor.hits
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
    def make(client: inngest.Inngest) -> Any:
        @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="a/go"))
        async def f(ctx: inngest.Context, step: inngest.Step) -> Any:
            config = await step.run("config", lambda: {"n": 1})
            config["n"] += 1  # before the step is saved: what a replay gives must not change
            return await step.run("use", lambda: config["n"])

        return f

    executor, answer = await _calling(make, OURS)
    assert executor.saved == [{"n": 1}]
    assert orjson.loads(answer.encoded())[0]["data"] == 2
