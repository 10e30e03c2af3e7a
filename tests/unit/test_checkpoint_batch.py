"""Our SDK's group commit of checkpoints (inngest_like/_checkpoint.py Batch): a checkpoint
goes out at once while fewer than IN_FLIGHT batches are on their way, else with the others
that arrived meanwhile; each gets its own status back, and a batch without an answer is
599 for each (their calls try again)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from inngest_like._checkpoint import Batch, Sessions
from tests.procs import free_port


async def _server(handler: Any) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/v1/checkpoints", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/v1/checkpoints"


async def test_checkpoints_that_arrive_while_batches_are_out_go_together() -> None:
    sizes: list[int] = []
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        entries = (await request.json())["checkpoints"]
        sizes.append(len(entries))
        await release.wait()
        return web.json_response({"results": [
            {"status": 404 if e["run_id"] == "gone" else 200} for e in entries]})

    runner, url = await _server(handler)
    sessions = Sessions()
    try:
        batch = Batch(sessions, url, {"Content-Type": "application/json"})
        run_ids = ["r0", "r1", "gone", *(f"r{i}" for i in range(3, 10))]
        saves = [asyncio.ensure_future(batch.save({"run_id": r, "steps": []}))
                 for r in run_ids]
        for _ in range(50):  # the first two are on their way; the rest wait for them
            await asyncio.sleep(0.01)
            if len(sizes) == Batch.IN_FLIGHT:
                break
        assert sizes == [1, 1] and len(batch.waiting) == 8
        release.set()
        statuses = await asyncio.wait_for(asyncio.gather(*saves), 5)
        assert sizes == [1, 1, 8]  # one request for the eight that waited
        assert statuses == [200, 200, 404] + [200] * 7
    finally:
        await sessions.close()
        await runner.cleanup()


async def test_a_refused_or_unanswered_batch_is_each_checkpoints_status() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=503, body=orjson.dumps({"error": "busy"}))

    runner, url = await _server(refuse)
    sessions = Sessions()
    try:
        statuses = await asyncio.gather(*(Batch(sessions, url, {}).save({"run_id": "r"})
                                          for _ in range(3)))
        assert statuses == [503] * 3
    finally:
        await runner.cleanup()
    # nobody listens there any more: no answer at all
    assert await Batch(sessions, url, {}).save({"run_id": "r"}) == 599
    await sessions.close()
