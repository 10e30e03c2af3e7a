"""Serve functions from a FastAPI app: `inngest_like.fast_api.serve(app, client, [fn])`.

The endpoint is a plain ASGI route: FastAPI's route wrapper (dependency solving, an exit
stack per request, the endpoint run through a validation layer) cost about as much per call
as the SDK's own work, and this endpoint takes every call of every run."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import fastapi
from starlette.datastructures import URL
from starlette.routing import Route
from starlette.types import Lifespan, Receive, Scope, Send

from ._client import Inngest
from ._function import Function
from ._handler import Handler, Request, Response


async def _read(scope: Scope, receive: Receive) -> Request | None:
    """The request as the handler takes it; None when the client left mid-body."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return Request(
        method=scope["method"],
        url=str(URL(scope=scope)),
        query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                             keep_blank_values=True)),
        headers={k.decode("latin-1").lower(): v.decode("latin-1")
                 for k, v in scope["headers"]},
        body=b"".join(chunks),
    )


async def _write(response: Response, send: Send) -> None:
    body = response.encoded()
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
               for k, v in response.headers.items()
               if k.lower() not in ("content-length", "content-type")]
    headers += [(b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Endpoint:
    """GET introspection, PUT sync, POST calls: an ASGI app the route hands requests to."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = await _read(scope, receive)
        if request is None:
            return  # nobody to answer
        if request.method == "POST":
            response = await self.handler.call(request)
        elif request.method == "PUT":
            response = await self.handler.sync(request)
        else:
            response = self.handler.inspect(request)
        await _write(response, send)


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

    # an ASGI object as the endpoint: Starlette hands it the request as is (HEAD as GET)
    app.router.routes.append(Route(route, _Endpoint(handler), methods=["GET", "PUT", "POST"],
                                   include_in_schema=False))
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
