"""The Restate side of bench.peers: one service, `bench`, with the same workflows as our
bench.apps functions, each step a `ctx.run_typed` (journaled by restate-server before the
handler goes on). Served by Hypercorn over HTTP/2 (what restate-server speaks to a
deployment):

    python -m hypercorn bench.peer_restate:app --bind 127.0.0.1:PORT

bench.peers starts it, registers it with the admin API and invokes the handlers over the
ingress (`POST /bench/<handler>`, which answers with the handler's result).
"""

from __future__ import annotations

import time
from typing import Any

import restate

service = restate.Service("bench")


def _value(i: int) -> int:
    return i


def _payload(i: int, size: int) -> str:
    return f"{i:08d}" + "x" * (size - 8)


@service.handler()
async def noop(ctx: restate.Context, req: dict[str, Any]) -> int:
    """`n` no-op steps (bench-noop)."""
    n = int(req.get("n", 1))
    for i in range(n):
        await ctx.run_typed(f"s{i}", _value, i=i)
    return n


@service.handler()
async def big(ctx: restate.Context, req: dict[str, Any]) -> int:
    """`n` steps that each return `size` bytes (bench-big)."""
    n, size = int(req.get("n", 1)), int(req.get("size", 10_240))
    for i in range(n):
        await ctx.run_typed(f"s{i}", _payload, i=i, size=size)
    return n


@service.handler()
async def three(ctx: restate.Context, req: dict[str, Any]) -> int:
    """Three no-op steps (bench-three)."""
    total = 0
    for i in range(3):
        total += await ctx.run_typed(f"s{i}", _value, i=i)
    return total


@service.handler()
async def first(ctx: restate.Context, req: dict[str, Any]) -> float:
    """No step: answers the wall-clock time at its first line (bench-first)."""
    started = time.time()
    return started


app = restate.app(services=[service])
