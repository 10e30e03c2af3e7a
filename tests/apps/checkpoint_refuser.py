"""A reverse proxy in front of the executor's API that refuses checkpoints (503) and
forwards everything else: an SDK pointed at it must fall back to the plain protocol.
`INNGEST_BASE_URL` names the executor behind it."""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TARGET = os.environ["INNGEST_BASE_URL"]
refused = 0


async def forward(request: Request) -> Response:
    global refused
    if request.url.path.startswith("/v1/checkpoint"):  # one run's, or a batch (ours)
        refused += 1
        return JSONResponse({"error": "checkpoints refused by the test proxy"}, 503)
    if request.url.path == "/refused":
        return JSONResponse({"refused": refused})
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.request(
            request.method, TARGET + request.url.path, params=request.query_params,
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"})
    return Response(answer.content, answer.status_code,
                    {k: v for k, v in answer.headers.items()
                     if k.lower() not in ("content-length", "transfer-encoding", "connection")})


app = Starlette(routes=[Route("/{path:path}", forward,
                              methods=["GET", "POST", "PUT", "DELETE"])])
