"""A run's end events: `inngest/function.finished` is stored only when something uses it."""

from __future__ import annotations

from redis.asyncio import Redis

from executor import keys
from executor.driver import Completed

from .harness import Engine, total


async def _finished_events(redis: Redis) -> int:
    return await total(redis, lambda s: keys.events_by_name("inngest/function.finished", s))


async def test_finished_is_not_stored_when_nothing_listens(engine: Engine,
                                                           redis: Redis) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed("ok"))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert (await engine.run(run_id))["status"] == "Completed"
    assert await _finished_events(redis) == 0
    assert await total(redis, keys.outbox) == 0  # handled, not left for the sweep


async def test_finished_is_stored_when_a_function_is_triggered_by_it(engine: Engine,
                                                                      redis: Redis) -> None:
    await engine.sync({"id": "f"}, {"id": "audit",
                                    "triggers": [{"event": "inngest/function.finished"}]})
    engine.answer(lambda call: Completed("ok"))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    assert await _finished_events(redis) == 1
    runs = await engine.executor.ingest.runs_of_event(f"{run_id}-finished")
    assert len(runs) == 1  # the audit function ran for it
