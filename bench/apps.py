"""The apps the benchmarks serve with a real uvicorn process.

`app` (bench.apps:app) serves two functions through the SDK: `bench-noop` runs
`event.data.n` no-op steps, `bench-noop0` has no step at all (its call is the SDK's floor).
(`bench-big`, `bench-three*` and `bench-first` serve bench.growth, bench.flow and bench.peers.)
It also has a trivial `POST /bench/ping` endpoint (the transport floor) and times every
request to the SDK endpoint inside the ASGI app (`GET /bench/stats`, `POST /bench/reset`),
so the benchmark can split a step's time between the app and everything else.

`echo_app` (bench.apps:echo_app) is a bare ASGI app that answers every request with a
small fixed JSON body: the server side of the HTTP client comparison, kept as cheap as
possible so that the clients' own costs show.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

import inngest_like as inngest
import inngest_like.fast_api

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SERVE_PATH = "/api/inngest"

# BENCH_CHECKPOINTING=0 serves the same functions without checkpointing (one call per step),
# so a benchmark can show both in one run
client = inngest.Inngest(app_id="bench",
                         checkpointing=os.environ.get("BENCH_CHECKPOINTING", "1") != "0")


@client.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="bench/noop"), retries=0)
async def noop(ctx: inngest.Context, step: inngest.Step) -> int:
    n = int(ctx.event.data.get("n", 1))
    for i in range(n):
        await step.run(f"s{i}", lambda i=i: i)
    return n


@client.create_function(fn_id="big", trigger=inngest.TriggerEvent(event="bench/big"), retries=0)
async def big(ctx: inngest.Context, step: inngest.Step) -> int:
    """`n` steps that each return `size` bytes: the state a long LLM agent accumulates."""
    n, size = int(ctx.event.data.get("n", 1)), int(ctx.event.data.get("size", 10_240))
    for i in range(n):
        await step.run(f"s{i}", lambda i=i: f"{i:08d}" + "x" * (size - 8))
    return n


@client.create_function(fn_id="noop0", trigger=inngest.TriggerEvent(event="bench/noop0"), retries=0)
async def noop0(ctx: inngest.Context, step: inngest.Step) -> int:
    return 0


@client.create_function(fn_id="first", trigger=inngest.TriggerEvent(event="bench/first"), retries=0)
async def first(ctx: inngest.Context, step: inngest.Step) -> float:
    """No step: returns the wall-clock time at its first line (bench.peers: event -> first
    line of user code)."""
    started = time.time()
    return started


async def _three_steps(step: inngest.Step) -> int:
    total = 0
    for i in range(3):
        total += await step.run(f"s{i}", lambda i=i: i)
    return total


# bench.flow: the same 3-step function with no flow control, with a concurrency limit, and
# with every start-time option on but never binding (the cost of deciding, not of waiting)
@client.create_function(fn_id="three", trigger=inngest.TriggerEvent(event="bench/three"),
                        retries=0)
async def three(ctx: inngest.Context, step: inngest.Step) -> int:
    return await _three_steps(step)


@client.create_function(fn_id="three-limited",
                        trigger=inngest.TriggerEvent(event="bench/three-limited"), retries=0,
                        concurrency=inngest.Concurrency(limit=4))
async def three_limited(ctx: inngest.Context, step: inngest.Step) -> int:
    return await _three_steps(step)


@client.create_function(
    fn_id="three-flow", trigger=inngest.TriggerEvent(event="bench/three-flow"), retries=0,
    concurrency=inngest.Concurrency(limit=10_000, key="event.data.user"),
    throttle=inngest.Throttle(limit=100_000, period=1),
    rate_limit=inngest.RateLimit(limit=100_000, period=60, key="event.data.user"),
    priority=inngest.Priority(run="event.data.vip ? 60 : 0"),
    idempotency="event.data.id",
)
async def three_flow(ctx: inngest.Context, step: inngest.Step) -> int:
    return await _three_steps(step)


class _Timing:
    """Wall time spent inside the ASGI app for POSTs to the SDK endpoint."""

    def __init__(self) -> None:
        self.calls = 0
        self.total_s = 0.0

    def reset(self) -> None:
        self.calls = 0
        self.total_s = 0.0


TIMING = _Timing()


def _timed(inner: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != SERVE_PATH:
            await inner(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await inner(scope, receive, send)
        finally:
            TIMING.calls += 1
            TIMING.total_s += time.perf_counter() - started

    return middleware


fastapi_app = FastAPI(title="inngest_like benchmark app")
inngest_like.fast_api.serve(
    fastapi_app, client, [noop, noop0, big, first, three, three_limited, three_flow]
)


@fastapi_app.post("/bench/ping")
async def ping(request: Request) -> Response:
    await request.body()
    return Response(b'{"ok":true}', media_type="application/json")


@fastapi_app.get("/bench/stats")
async def stats() -> Response:
    body = {"calls": TIMING.calls, "total_ms": TIMING.total_s * 1000}
    return Response(orjson.dumps(body), media_type="application/json")


@fastapi_app.post("/bench/reset")
async def reset() -> Response:
    TIMING.reset()
    return Response(b"{}", media_type="application/json")


app = _timed(fastapi_app)

# -- the bare echo server of bench.driver ------------------------------------------------------
ECHO_BODY = orjson.dumps(
    [
        {
            "id": "a" * 40,
            "op": "StepRun",
            "displayName": "s0",
            "name": "s0",
            "userland": {"id": "s0", "index": 0},
            "data": 0,
        }
    ]
)
ECHO_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(ECHO_BODY)).encode()),
    (b"x-inngest-sdk", b"inngest-py:v0.0.0"),
]


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # drain the request body
        message = await receive()
        more = bool(message.get("more_body"))
    await send({"type": "http.response.start", "status": 200, "headers": ECHO_HEADERS})
    await send({"type": "http.response.body", "body": ECHO_BODY})
