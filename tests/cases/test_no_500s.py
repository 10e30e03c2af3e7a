"""Issue 10.8: inputs that used to answer 500 now answer a 4xx naming the field (and store
nothing), or work: JSON nested deeper than orjson writes, durations that overflow, a
priority of inf or NaN, a malformed dashboard cursor, a malformed call to the SDK's
endpoint. And an app cannot take over a function id another app owns. In-process: the API
and dashboard over fakeredis, and an app served by our SDK, through ASGI transports."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import httpx
import orjson
import pytest
from fastapi import FastAPI

import inngest_like as inngest
import inngest_like.fast_api
from dashboard import mount
from executor.api import create_app
from executor.service import Executor, Settings

from .test_bad_events import Api, fn_config, register_body

JSON = {"Content-Type": "application/json"}
LEVELS = 300  # orjson reads this deep, but writes at most 254 levels


def deep(levels: int = LEVELS) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


class Dashboard(Api):
    async def csrf(self, path: str = "/events") -> str:
        page = await self.http.get(path)
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert found
        return found.group(1)


@pytest.fixture
async def api() -> AsyncIterator[Dashboard]:
    redis = fakeredis.FakeAsyncRedis()
    executor = Executor(redis, Settings(run_worker=False))
    await executor.registry.refresh()
    app = create_app(executor, manage_lifecycle=False)
    mount(app, executor)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://executor") as http:
        api = Dashboard(redis, http)
        answer = await http.post("/fn/register", json=register_body([fn_config()]))
        assert answer.status_code == 200, answer.text
        yield api
    await executor.driver.close()
    await redis.aclose()


# -- JSON nested too deep -------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body"), [
    ("/e/key", b'{"name": "shop/deep", "data": ' + deep() + b"}"),
    ("/e/key", b'[{"name": "shop/deep", "data": ' + deep(2000) + b"}]"),
    ("/fn/register", orjson.dumps(register_body([fn_config("shop-deep")]))[:-1]
     + b', "extra": ' + deep() + b"}"),
    ("/v1/checkpoint/some-run/async",
     b'{"steps": [{"id": "a", "op": "StepRun", "data": ' + deep() + b"}]}"),
    ("/v1/cancellations", b'{"function_id": "x", "extra": ' + deep() + b"}"),
], ids=["event", "event-2000-levels", "register", "checkpoint", "cancellation"])
async def test_deep_json_is_refused_by_the_api(api: Dashboard, path: str, body: bytes) -> None:
    error = await api.refused(body, path=path)
    assert error == "body: JSON nested deeper than 100 levels"


async def test_deep_json_in_the_dashboard_send_form(api: Dashboard) -> None:
    before = await api.snapshot()
    answer = await api.http.post("/events", data={
        "name": "shop/deep", "data": deep().decode(), "csrf": await api.csrf()})
    assert answer.status_code == 400
    assert "data: JSON nested deeper than 100 levels" in answer.text
    after = await api.snapshot()
    assert {k: v for k, v in after.items() if b"session-secret" not in k} == before


# -- durations that overflow ----------------------------------------------------------------

HUGE = "99999999999999999999h"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"triggers": [{"cron": f"@every {HUGE}"}]}, "triggers[0].cron"),
    ({"triggers": [{"cron": "@every " + "9" * 400 + "h"}]}, "triggers[0].cron"),
    ({"throttle": {"limit": 1, "period": HUGE}}, "throttle.period"),
    ({"throttle": {"limit": 1, "period": 10**18}}, "throttle.period"),
    ({"timeouts": {"start": HUGE}}, "timeouts.start"),
    ({"cancel": [{"event": "shop/cancel", "timeout": HUGE}]}, "cancel[0].timeout"),
    ({"debounce": {"period": HUGE}}, "debounce.period"),
])
async def test_overflowing_durations_are_refused(api: Dashboard, overrides: dict[str, Any],
                                                 field: str) -> None:
    error = await api.refused(register_body([fn_config("shop-long", **overrides)]),
                              path="/fn/register")
    assert f"{field}:" in error and "longer than the longest duration" in error, error


# -- priority inf / NaN ---------------------------------------------------------------------

@pytest.mark.parametrize("expression", ["event.data.x * 1e308 * 10.0", "double('nan')",
                                        "-event.data.x * 1e308 * 10.0"])
async def test_a_priority_of_inf_or_nan_starts_runs(api: Dashboard, expression: str) -> None:
    body = register_body([fn_config("shop-prio", triggers=[{"event": "prio/x"}],
                                    priority={"run": expression})], app_id="prio")
    assert (await api.http.post("/fn/register", json=body)).status_code == 200
    for events in ({"name": "prio/x", "data": {"x": 1.0}},
                   [{"name": "other/x", "data": {}}, {"name": "prio/x", "data": {"x": 2.0}}]):
        answer = await api.http.post("/e/key", json=events)
        assert answer.status_code == 200, answer.text
        last = answer.json()["ids"][-1]
        runs = (await api.http.get(f"/v1/events/{last}/runs")).json()["data"]
        assert [r["function_id"] for r in runs] == ["shop-prio"]


# -- dashboard cursors ------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/?cursor=%C2%B2.x", "/runs?cursor=%C2%B2.x",
                                  "/events?cursor=%C2%B2.x", "/events?cursor=%E2%85%A0.%00",
                                  "/?cursor=.", "/events?cursor=1."])
async def test_malformed_cursors_show_the_first_page(api: Dashboard, path: str) -> None:
    answer = await api.http.get(path)
    assert answer.status_code == 200, answer.text[-500:]


# -- an app cannot take over another app's function ------------------------------------------

async def test_a_function_id_stays_with_the_app_that_owns_it(api: Dashboard) -> None:
    owner = register_body([fn_config("shared-fn")], app_id="owner")
    assert (await api.http.post("/fn/register", json=owner)).status_code == 200
    thief = register_body([fn_config("mine-fn"), fn_config("shared-fn")], app_id="thief")
    thief["url"] = "http://evil.example/api"
    error = await api.refused(thief, path="/fn/register", status=409)
    assert error == ("functions[1].id: 'shared-fn' belongs to app 'owner'; sync that app "
                     "without it first")
    answer = await api.http.post("/fn/register", json=owner)  # the owner's re-sync
    assert answer.status_code == 200
    functions = {f["id"]: f for f in (await api.http.get("/v1/functions")).json()["data"]}
    assert functions["shared-fn"]["app_id"] == "owner"
    assert "mine-fn" not in functions  # all or nothing
    # once the owner lets it go, another app may take it
    let_go = register_body([fn_config("other-fn")], app_id="owner")
    assert (await api.http.post("/fn/register", json=let_go)).status_code == 200
    assert (await api.http.post("/fn/register", json=thief)).status_code == 200
    functions = {f["id"]: f for f in (await api.http.get("/v1/functions")).json()["data"]}
    assert functions["shared-fn"]["app_id"] == "thief"
    assert functions["other-fn"]["app_id"] == "owner"


# -- the SDK's serve endpoint ---------------------------------------------------------------

client = inngest.Inngest(app_id="echo-app", is_production=False)


@client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="echo/x"))
async def echo(ctx: inngest.Context, step: inngest.Step) -> Any:
    return ctx.event.data


sdk_app = FastAPI()
inngest_like.fast_api.serve(sdk_app, client, [echo])


def call_body(**overrides: Any) -> bytes:
    body = {"event": {"name": "echo/x", "data": {}, "id": "x", "ts": 1}, "events": [],
            "steps": {}, "use_api": False, "ctx": {"run_id": "r", "attempt": 0,
                                                   "stack": {"stack": []},
                                                   "disable_immediate_execution": False}}
    return orjson.dumps({**body, **overrides})


@pytest.mark.parametrize(("body", "words"), [
    (call_body(steps=[1]), "steps: must be an object"),
    (call_body(steps="memos"), "steps: must be an object"),
    (call_body(events={"name": "x"}), "events: must be a list"),
    (call_body(ctx=[1]), "ctx: must be an object"),
    (b"[1]", "body: must be a JSON object"),
    (call_body()[:-1].replace(b'"data":{}', b'"data":' + deep()) + b"}",
     "body: JSON nested deeper than 100 levels"),
], ids=["steps-list", "steps-string", "events-object", "ctx-list", "array", "deep"])
async def test_malformed_calls_to_the_sdk_are_400(body: bytes, words: str) -> None:
    transport = httpx.ASGITransport(app=sdk_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        answer = await http.post("/api/inngest", params={"fnId": "echo-app-echo",
                                                         "stepId": "step"},
                                 content=body, headers=JSON)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "malformed_request"
        assert words in answer.json()["message"]
        fine = await http.post("/api/inngest", params={"fnId": "echo-app-echo",
                                                       "stepId": "step"},
                               content=call_body(), headers=JSON)
        assert fine.status_code == 200 and fine.json() == {}
