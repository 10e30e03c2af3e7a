"""A raw FastAPI app that pretends to be an Inngest SDK and answers wrongly (no SDK used).

The executor calls `POST /api/inngest?fnId=<id>&stepId=<step>`; the answer depends on fnId.
`GET /calls` reports how often each function was called, so tests can count attempts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

SDK_HEADERS = {"X-Inngest-SDK": "inngest-py:v0.5.18", "X-Inngest-Req-Version": "2"}

app = FastAPI()
calls: Counter[str] = Counter()


@app.get("/api/inngest")
async def introspect() -> Response:
    return JSONResponse({"function_count": 5, "mode": "dev"}, headers=SDK_HEADERS)


@app.get("/calls")
async def call_counts() -> dict[str, int]:
    return dict(calls)


@app.post("/api/inngest")
async def call(request: Request) -> Response:
    fn_id = request.query_params.get("fnId", "")
    calls[fn_id] += 1
    body: dict[str, Any] = await request.json()
    if fn_id == "bad-not-json":
        return Response(b"<html><body>Hello from a proxy</body></html>", 200,
                        headers=SDK_HEADERS, media_type="text/html")
    if fn_id == "bad-unknown-op":
        ops = [{"op": "TeleportStep", "id": "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
                "displayName": "teleport"}]
        return JSONResponse(ops, 206, headers=SDK_HEADERS)
    if fn_id == "bad-group-invoke":  # an invoke beside a step, with a list for its payload
        ops = [{"op": "StepPlanned", "id": "a" * 40, "displayName": "a"},
               {"op": "InvokeFunction", "id": "b" * 40, "displayName": "call",
                "opts": {"function_id": "bad-good", "payload": ["not", "an", "object"]}}]
        return JSONResponse(ops, 206, headers=SDK_HEADERS)
    if fn_id == "bad-ai-url":  # step.ai.infer asking the executor to read a local file
        ops = [{"op": "AIGateway", "id": "c" * 40, "displayName": "ask",
                "opts": {"url": "file:///etc/passwd", "body": {}, "auth_key": "k",
                         "format": "openai-chat", "headers": {}}}]
        return JSONResponse(ops, 206, headers=SDK_HEADERS)
    if fn_id == "bad-no-header":
        return JSONResponse({"looks": "fine"}, 200)
    if fn_id == "bad-empty-ops":
        return JSONResponse([], 206, headers=SDK_HEADERS)
    if fn_id == "bad-discovery-loop":
        return JSONResponse([{"op": "DiscoveryRequest"}], 206, headers=SDK_HEADERS)
    if fn_id == "bad-hang":
        await asyncio.sleep(3600)  # never answers: the executor's call timeout ends it
    if fn_id == "bad-html-502":
        return Response(b"<html>502 Bad Gateway</html>", 502, media_type="text/html")
    if fn_id == "bad-good":
        return JSONResponse(
            {"ok": True, "echo": body["event"]["data"], "attempt": body["ctx"]["attempt"]},
            200, headers=SDK_HEADERS,
        )
    return JSONResponse({"name": "Error", "message": f"unknown function {fn_id!r}"}, 500,
                        headers=SDK_HEADERS)
