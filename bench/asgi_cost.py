"""CPU per request of the two ASGI apps on a run's path, called in-process: the executor's
checkpoint and event routes, and the SDK's serve endpoint.

    python -m bench.asgi_cost            # 2000 requests of each kind

Each request is handed straight to the ASGI app (no socket, no server): what is measured is
the app's own work, its framework included, in CPU time of this process (the executor's
Redis calls go to a real redis-server, whose time is not counted). CPU time, unlike wall
time, barely moves when other processes load the machine, so two runs of this (before and
after a change) can be compared on a busy machine where bench.peers cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from tests.procs import RedisServer

from ._common import machine, median, processes, run

Message = MutableMapping[str, Any]


async def call(app: Any, method: str, path: str, body: bytes, query: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, bytes]:
    """One request through an ASGI app; (status, body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": query, "server": ("127.0.0.1", 8288),
             "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"127.0.0.1:8288"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()), *(headers or [])]}
    sent = False
    status, chunks = 0, []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays until it has its answer
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def cpu_per_call(n: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Median over 5 slices of CPU microseconds per call of `one`."""
    for i in range(min(n // 10, 200)):  # warm up
        await one(-1 - i)
    slices = []
    per_slice = n // 5
    for s in range(5):
        started = time.process_time()
        for i in range(per_slice):
            await one(s * per_slice + i)
        slices.append((time.process_time() - started) * 1e6 / per_slice)
    return median(slices)


async def executor_costs(redis_url: str, n: int) -> dict[str, float]:
    from executor import keys
    from executor.api import create_app
    from executor.redis_client import connect
    from executor.service import Executor, Settings

    redis = connect(redis_url)  # the executor's own client and pool
    executor = Executor(redis, Settings(run_worker=False))
    await executor.scripts.load_all()
    app = create_app(executor, manage_lifecycle=False)
    out = {}

    run_id = "01BENCHRUN0000000000000000"
    await redis.hset(keys.run(run_id), mapping={"status": "Running", "function_id": "bench-f"})
    path = f"/v1/checkpoint/{run_id}/async"

    async def checkpoint(i: int) -> None:
        body = orjson.dumps({"run_id": run_id, "fn_id": "bench-f", "steps": [
            {"op": "StepRun", "id": f"{i:040d}", "name": f"s{i}", "displayName": f"s{i}",
             "data": i}]})
        status, answer = await call(app, "POST", path, body)
        assert status == 200, answer

    out["executor: checkpoint route"] = await cpu_per_call(n, checkpoint)
    event = orjson.dumps({"name": "bench/nobody-listens", "data": {"n": 1}})

    async def send_event(i: int) -> None:
        status, answer = await call(app, "POST", "/e/bench-key", event)
        assert status == 200, answer

    out["executor: event route (no function)"] = await cpu_per_call(n, send_event)
    await redis.aclose()
    return out


async def sdk_costs(n: int) -> dict[str, float]:
    from bench.apps import fastapi_app

    out = {}

    def request(fn: str, steps: int) -> bytes:
        from inngest_like._engine import hash_step_id

        memos = {hash_step_id(f"s{i}", 0): {"data": i} for i in range(steps)}
        return orjson.dumps({
            "event": {"name": "bench/noop", "data": {"n": steps}, "id": "e1", "ts": 1},
            "events": [{"name": "bench/noop", "data": {"n": steps}, "id": "e1", "ts": 1}],
            "steps": memos, "version": 1, "use_api": False,
            "ctx": {"run_id": "r1", "attempt": 0, "fn_id": "", "step_id": "step",
                    "stack": {"stack": list(memos), "current": len(memos)}}})

    for fn, steps, label, status_ok in [
        ("bench-noop0", 0, "SDK: call of a 0-step function", 200),
        ("bench-noop", 0, "SDK: call that runs 1 step (206)", 206),
        ("bench-noop", 100, "SDK: call replaying 100 steps, running 1 (206)", 206),
    ]:
        body = request(fn, steps)
        # bench-noop runs event.data.n steps: one more than the memos, so one runs
        body = body.replace(b'"n":' + str(steps).encode(), b'"n":' + str(steps + 1).encode())
        if fn == "bench-noop0":
            body = request(fn, 0)
        query = f"fnId={fn}&stepId=step".encode()

        async def one(i: int, body: bytes = body, query: bytes = query,
                      status_ok: int = status_ok) -> None:
            status, answer = await call(fastapi_app, "POST", "/api/inngest", body, query)
            assert status == status_ok, (status, answer[:300])

        out[label] = await cpu_per_call(n, one)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.asgi_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("INNGEST_DEV", "1")
    print(f"bench.asgi_cost: {machine()}")
    with processes("bench-asgi-") as (log_dir, started):
        redis = RedisServer(log_dir)
        started.append(redis)
        redis.start()
        costs = run(executor_costs(f"redis://127.0.0.1:{redis.port}/0", args.n))
    costs.update(run(sdk_costs(args.n)))
    print("CPU microseconds per request (median of 5 slices):")
    for label, us in costs.items():
        print(f"  {label:<52} {us:8.1f}")


if __name__ == "__main__":
    main()
