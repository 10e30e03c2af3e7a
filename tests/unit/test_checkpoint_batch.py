"""Our SDK's group commit of checkpoints (inngest_like/_checkpoint.py Batch): a checkpoint
goes out at once while fewer than IN_FLIGHT batches are on their way, else with the others
that arrived meanwhile; each gets its own status back, and a batch without an answer is
599 for each (their calls try again)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from inngest_like._checkpoint import Batch

from .fake_api import serving

PATH = "/v1/checkpoints"


@contextlib.asynccontextmanager
async def _batching(handler: Any) -> AsyncIterator[Batch]:
    """A Batch to an endpoint answering with `handler`."""
    async with serving({PATH: handler}) as origin:
        batch = Batch(origin + PATH, {"Content-Type": "application/json"})
        try:
            yield batch
        finally:
            await batch.http.close()


class Held:
    """A checkpoints endpoint that notes each batch's size and answers once released (a run
    named "gone" is 404, the others 200)."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.release = asyncio.Event()

    async def handler(self, request: web.Request) -> web.Response:
        entries = (await request.json())["checkpoints"]
        self.sizes.append(len(entries))
        await self.release.wait()
        return web.json_response({"results": [
            {"status": 404 if e.get("run_id") == "gone" else 200} for e in entries]})

    async def out(self) -> None:
        """Until IN_FLIGHT batches reached the endpoint."""
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(self.sizes) == Batch.IN_FLIGHT:
                return


async def test_checkpoints_that_arrive_while_batches_are_out_go_together() -> None:
    held = Held()
    sizes, release = held.sizes, held.release
    async with _batching(held.handler) as batch:
        run_ids = ["r0", "r1", "gone", *(f"r{i}" for i in range(3, 10))]
        saves = [asyncio.ensure_future(batch.save({"run_id": r, "steps": []}))
                 for r in run_ids]
        await held.out()  # the first two are on their way; the rest wait for them
        assert sizes == [1, 1] and len(batch.waiting) == 8
        release.set()
        statuses = await asyncio.wait_for(asyncio.gather(*saves), 5)
        assert sizes == [1, 1, 8]  # one request for the eight that waited
        assert statuses == [200, 200, 404] + [200] * 7


async def test_a_batch_is_bounded_in_bytes_but_takes_one_larger_checkpoint() -> None:
    held = Held()
    sizes, release = held.sizes, held.release
    async with _batching(held.handler) as batch:
        big = "x" * (Batch.MAX_BYTES // 3)
        saves = [asyncio.ensure_future(batch.save({"run_id": f"r{i}", "data": big}))
                 for i in range(2 + 5)]
        saves.append(asyncio.ensure_future(batch.save({"data": "y" * 2 * Batch.MAX_BYTES})))
        await held.out()
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*saves), 5) == [200] * 8
        assert sizes == [1, 1, 2, 2, 1, 1]  # two thirds of the cap at most; the big one alone


async def test_a_refused_or_unanswered_batch_is_each_checkpoints_status() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=503, body=orjson.dumps({"error": "busy"}))

    async with _batching(refuse) as batch:
        statuses = await asyncio.gather(*(batch.save({"run_id": "r"}) for _ in range(3)))
        assert statuses == [503] * 3
    # nobody listens there any more: no answer at all
    assert await Batch(batch.url, {}).save({"run_id": "r"}) == 599
