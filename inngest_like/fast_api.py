"""Serve functions from a FastAPI app: `inngest_like.fast_api.serve(app, client, [fn])`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import fastapi
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response as StarletteResponse
from starlette.types import Lifespan

from ._client import Inngest
from ._function import Function
from ._handler import Handler, Request, Response


async def _read(request: StarletteRequest) -> Request:
    return Request(
        method=request.method,
        url=str(request.url),
        query=dict(request.query_params),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=await request.body(),
    )


def _write(response: Response) -> StarletteResponse:
    return StarletteResponse(
        content=response.encoded(),
        status_code=response.status,
        headers=response.headers,
        media_type="application/json",
    )


def serve(
    app: fastapi.FastAPI,
    client: Inngest,
    functions: list[Function],
    *,
    serve_origin: str | None = None,
    serve_path: str | None = None,
) -> Handler:
    """Mount the endpoint (GET introspection, PUT sync, POST calls) at `/api/inngest`."""
    handler = Handler(client, functions, serve_origin=serve_origin, serve_path=serve_path)
    route = serve_path or "/api/inngest"

    async def get(request: StarletteRequest) -> StarletteResponse:
        return _write(handler.inspect(await _read(request)))

    async def put(request: StarletteRequest) -> StarletteResponse:
        return _write(await handler.sync(await _read(request)))

    async def post(request: StarletteRequest) -> StarletteResponse:
        return _write(await handler.call(await _read(request)))

    app.add_api_route(route, get, methods=["GET"], include_in_schema=False)
    app.add_api_route(route, put, methods=["PUT"], include_in_schema=False)
    app.add_api_route(route, post, methods=["POST"], include_in_schema=False)
    app.router.lifespan_context = _closing(app.router.lifespan_context, client)
    return handler


def _closing(lifespan: Lifespan[Any], client: Inngest) -> Lifespan[Any]:
    """The app's lifespan, then the client's connection pool closed at shutdown."""

    @contextlib.asynccontextmanager
    async def wrapped(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            yield state
        await client.aclose()

    return wrapped
