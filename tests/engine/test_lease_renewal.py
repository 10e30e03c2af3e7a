"""A call's lease is renewed while it is out, and only then: the renewer stops when the
call ends even if its cancellation is lost inside a Redis command (as a client rebuilding
its cluster map during a failover can lose it), so an ended call never holds its item."""

from __future__ import annotations

import asyncio

import pytest

from .harness import Engine


async def test_the_renewer_stops_with_its_call_even_if_a_cancel_is_swallowed(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = engine.executor.worker
    worker.lease_ms = 30  # a renewal every 10 ms
    renewals: list[str] = []

    async def swallowing_renew(item_id: str, token: str, now: int, expiry: int) -> bool:
        renewals.append(item_id)
        try:
            await asyncio.sleep(0.05)  # a slow command, in flight when the call ends
        except asyncio.CancelledError:
            pass  # the client loses the cancellation and answers
        return True

    monkeypatch.setattr(worker.queue, "renew", swallowing_renew)
    async with worker.renewing("r:1", "token"):
        await asyncio.sleep(0.1)  # the call is out: renewed
    assert renewals
    await asyncio.sleep(0.1)  # a renewal in flight at the end may finish...
    after = len(renewals)
    await asyncio.sleep(0.2)  # ...but no other starts
    assert len(renewals) == after
