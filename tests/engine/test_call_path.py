"""The worker's round trips: the calls one lease hands out read their runs' states together,
and a state read that way is the state the call is made with."""

from __future__ import annotations

from typing import Any

from executor.driver import Completed
from executor.state import CallState

from .harness import Call, Engine


async def test_one_lease_of_many_calls_reads_their_states_in_one_round_trip(
        engine: Engine) -> None:
    await engine.sync({"id": "f"})
    run_ids = [(await engine.send({"i": i}))[0] for i in range(6)]
    state = engine.executor.state
    single, batched = [], []
    load, load_many = state.load, state.load_many

    async def counted_load(run_id: str, item: Any = None) -> CallState | None:
        single.append(run_id)
        return await load(run_id, item)

    async def counted_load_many(ids: list[str], items: Any = None) -> list[CallState | None]:
        batched.append(list(ids))
        return await load_many(ids, items)

    state.load = counted_load  # type: ignore[method-assign]
    state.load_many = counted_load_many  # type: ignore[method-assign]
    seen: dict[str, Any] = {}

    def answer(call: Call) -> Completed:
        seen[call.run_id] = call.event["data"]["i"]
        return Completed(call.event["data"]["i"])

    engine.answer(answer)
    await engine.run_until_idle()
    # one pipeline, no read per call (the lease's items come shard after shard)
    assert [sorted(ids) for ids in batched] == [sorted(run_ids)] and single == []
    assert seen == {run_id: i for i, run_id in enumerate(run_ids)}  # each its own state
    for i, run_id in enumerate(run_ids):
        run = await engine.run(run_id)
        assert (run["status"], run["output"]) == ("Completed", i)


async def test_a_run_cancelled_before_its_lease_is_not_called(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    run_ids = [(await engine.send())[0] for _ in range(3)]
    await engine.executor.ingest.cancel(run_ids[1], "cancelled before its first call")
    called: list[str] = []

    def answer(call: Call) -> Completed:
        called.append(call.run_id)
        return Completed(None)

    engine.answer(answer)
    await engine.run_until_idle()
    assert sorted(called) == sorted([run_ids[0], run_ids[2]])
    assert (await engine.run(run_ids[1]))["status"] == "Cancelled"
