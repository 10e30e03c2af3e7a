"""The DBOS side of bench.peers: the same workflows as our bench.apps functions, as DBOS
workflows of DBOS steps (each step's output checkpointed in the SQLite system database
before the workflow goes on), behind a small HTTP app so that the benchmark drives every
system the same way, over loopback HTTP:

    BENCH_DBOS_DB=/tmp/x.sqlite python -m uvicorn bench.peer_dbos:app --port PORT

`POST /<workflow>` with a JSON body runs the workflow to its end and answers its result.
DBOS is a library: there is no server, the workflows run in this process.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from dbos import DBOS, DBOSConfig
from fastapi import FastAPI, Request, Response


@DBOS.step()
async def _value(i: int) -> int:
    return i


@DBOS.step()
async def _payload(i: int, size: int) -> str:
    return f"{i:08d}" + "x" * (size - 8)


@DBOS.workflow()
async def noop(n: int) -> int:
    for i in range(n):
        await _value(i)
    return n


@DBOS.workflow()
async def big(n: int, size: int) -> int:
    for i in range(n):
        await _payload(i, size)
    return n


@DBOS.workflow()
async def three() -> int:
    total = 0
    for i in range(3):
        total += await _value(i)
    return total


@DBOS.workflow()
async def first() -> float:
    started = time.time()
    return started


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    config: DBOSConfig = {
        "name": "bench-peers",
        "system_database_url": f"sqlite:///{os.environ['BENCH_DBOS_DB']}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()


app = FastAPI(lifespan=_lifespan)


def _json(value: Any) -> Response:
    return Response(f'{{"result":{value!r}}}', media_type="application/json")


@app.post("/noop")
async def run_noop(request: Request) -> Response:
    body = await request.json()
    return _json(await noop(int(body.get("n", 1))))


@app.post("/big")
async def run_big(request: Request) -> Response:
    body = await request.json()
    return _json(await big(int(body.get("n", 1)), int(body.get("size", 10_240))))


@app.post("/three")
async def run_three(request: Request) -> Response:
    await request.body()
    return _json(await three())


@app.post("/first")
async def run_first(request: Request) -> Response:
    await request.body()
    return _json(await first())


@app.get("/health")
async def health() -> Response:
    return Response(b"{}", media_type="application/json")
