"""The SDK's serve endpoint is a plain ASGI route in the user's FastAPI app: mounted the same
way, answering GET, PUT and POST as before, without FastAPI's route wrapper per call."""

from __future__ import annotations

import fastapi
import httpx
import orjson
import pytest
from fastapi.routing import APIRoute

import inngest_like as inngest
import inngest_like.fast_api


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> fastapi.FastAPI:
    monkeypatch.setenv("INNGEST_DEV", "1")
    client = inngest.Inngest(app_id="endpoint-test")

    @client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="t/hello"))
    async def hello(ctx: inngest.Context, step: inngest.Step) -> str:
        return await step.run("greet", lambda: f"hello {ctx.event.data['who']}")

    served = fastapi.FastAPI()
    inngest_like.fast_api.serve(served, client, [hello])
    return served


def _call(steps: dict[str, object]) -> bytes:
    event = {"name": "t/hello", "data": {"who": "ada"}, "id": "e1", "ts": 1}
    return orjson.dumps({"event": event, "events": [event], "steps": steps, "version": 1,
                         "ctx": {"run_id": "r1", "attempt": 0, "fn_id": "", "step_id": "step",
                                 "stack": {"stack": list(steps), "current": len(steps)}}})


async def test_the_endpoint_serves_calls_without_fastapis_route_wrapper(
        app: fastapi.FastAPI) -> None:
    served = [r for r in app.router.routes if getattr(r, "path", "") == "/api/inngest"]
    assert len(served) == 1 and not isinstance(served[0], APIRoute)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        url = "/api/inngest?fnId=endpoint-test-hello&stepId=step"
        first = await http.post(url, content=_call({}),
                                headers={"content-type": "application/json"})
        assert first.status_code == 206
        assert first.headers["content-type"] == "application/json"
        assert "x-inngest-sdk" in first.headers
        (op,) = first.json()
        assert (op["op"], op["data"]) == ("StepRun", "hello ada")
        done = await http.post(url, content=_call({op["id"]: {"data": "hello ada"}}))
        assert (done.status_code, done.json()) == (200, "hello ada")
        info = await http.get("/api/inngest")
        assert info.status_code == 200 and info.json()["function_count"] == 1
        assert (await http.delete("/api/inngest")).status_code == 405
