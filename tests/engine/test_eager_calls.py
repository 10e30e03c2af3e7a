"""Eager first calls: an idle worker starts a new run's first call while the ingest script
is still storing the run, plan-only (`disable_immediate_execution`: the code before the first
step runs, no step.run does), and acts on the answer only once the script handed the run to
it. A lone StepPlanned answer means the function reached its first step: the real first call
follows at once. A run the script did not store, or stored for another pass, drops it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from executor import keys
from executor.driver import Completed, Outcome
from executor.queue import QueueItem
from executor.registry import Registry
from executor.service import Executor, Settings
from executor.state import USE_API_BYTES
from executor.tracing import Tracing

from .harness import Call, Engine, ops, total

PLANNED = {"op": "StepPlanned", "id": "a" * 40, "displayName": "charge", "name": "charge"}


def _eager_worker(engine: Engine) -> Executor:
    """The engine's executor wired as the service wires a process that runs a worker."""
    executor = engine.executor
    executor.ingest.claim = executor.worker.claim
    executor.ingest.unclaim = executor.worker.unclaim
    executor.ingest.adopt = executor.worker.adopt
    executor.ingest.eager = executor.worker.eager
    return executor


def _record_the_script(executor: Executor, order: list[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    stored = executor.ingest._store

    async def store(*args: Any, **kwargs: Any) -> dict[str, Any]:
        order.append("script sent")
        out = await stored(*args, **kwargs)
        order.append("script answered")
        return out

    monkeypatch.setattr(executor.ingest, "_store", store)


def _spy_on_handle(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> list[QueueItem]:
    """The items whose call answers the worker acts on (opcodes.handle), in order."""
    acted: list[QueueItem] = []
    handle = executor.worker.opcodes.handle

    async def spy(item: QueueItem, *args: Any, **kwargs: Any) -> Any:
        acted.append(item)
        return await handle(item, *args, **kwargs)

    monkeypatch.setattr(executor.worker.opcodes, "handle", spy)
    return acted


async def test_the_first_call_starts_before_its_run_is_stored_and_completes_it(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    order: list[str] = []
    _record_the_script(executor, order, monkeypatch)

    def answer(call: Call) -> Outcome:
        order.append("plan-only call" if call.plan_only else "call")
        return Completed("done")

    engine.answer(answer)
    [run_id] = await engine.send()
    await executor.worker.drain()
    assert order == ["plan-only call", "script sent", "script answered"]
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "done"
    assert executor.worker.free_slots() == executor.worker.slots  # no slot left claimed


async def test_an_answer_before_the_script_waits_for_it(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app answers while the script still runs (the usual order: a plan-only call is
    short): the answer waits for the script, then completes the run at once."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    order: list[str] = []
    _record_the_script(executor, order, monkeypatch)

    async def answer(call: Call) -> Outcome:
        await asyncio.sleep(0)  # an answer that takes a moment, as over a socket: the
        await asyncio.sleep(0)  # lease's renewer starts meanwhile (and waits for the script)
        order.append("answer")
        return Completed("done")

    engine.answer(answer)
    [run_id] = await engine.send()
    await executor.worker.drain()
    assert order[:2] == ["script sent", "answer"]
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "done"
    assert len(engine.driver.calls) == 1


async def test_a_planned_first_step_is_run_by_the_real_first_call(
        engine: Engine, redis: Redis) -> None:
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops(PLANNED) if call.plan_only else Completed("charged"))
    [run_id] = await engine.send()
    await executor.worker.drain()
    calls = [(c.plan_only, c.step_id, c.attempt, c.qi_id) for c in engine.driver.calls]
    # both discovery calls of the same item: the second runs the step (no targeted call)
    assert calls == [(True, "step", 0, f"{run_id}:1"), (False, "step", 0, f"{run_id}:1")]
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "charged"
    assert await redis.hlen(keys.run_steps(run_id)) == 0  # the plan was not recorded


async def test_a_planned_first_step_with_limits_is_acted_on_as_planned(
        engine: Engine, redis: Redis) -> None:
    """A step declaring a timeout is planned by every call (the executor runs it in a call
    of its own): the eager call's plan is that answer, no call is repeated for it."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    limited = {**PLANNED, "opts": {"timeout": "30s"}}

    def answer(call: Call) -> Outcome:
        if call.step_id == PLANNED["id"]:
            return ops({"op": "StepRun", "id": PLANNED["id"], "name": "charge", "data": 1})
        return Completed("charged") if call.steps else ops(limited)

    engine.answer(answer)
    [run_id] = await engine.send()
    await executor.worker.drain()
    await engine.run_until_idle()
    # (the planned step's run keeps immediate execution off until it completes)
    assert engine.driver.calls[0].plan_only
    assert [c.step_id for c in engine.driver.calls] == ["step", PLANNED["id"], "step"]
    assert (await engine.run(run_id))["output"] == "charged"


async def test_the_answer_is_dropped_when_the_run_was_not_stored(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed("done"))

    async def unreachable(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(executor.ingest, "_store", unreachable)
    acted = _spy_on_handle(executor, monkeypatch)
    with pytest.raises(RedisConnectionError):
        await engine.send()
    await executor.worker.drain()
    [call] = engine.driver.calls
    assert call.plan_only and acted == []
    assert not await redis.exists(keys.run(call.run_id))  # nothing acted on the answer
    assert await total(redis, keys.runs) == 0
    assert executor.worker.free_slots() == executor.worker.slots


async def test_a_dropped_calls_span_ends(redis: Redis,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    engine = Engine(redis, tracing=Tracing(SimpleSpanProcessor(exporter)))
    try:
        executor = _eager_worker(engine)
        await engine.sync({"id": "f"})

        async def unreachable(*args: Any, **kwargs: Any) -> dict[str, Any]:
            raise RedisConnectionError("Redis went away")

        monkeypatch.setattr(executor.ingest, "_store", unreachable)
        with pytest.raises(RedisConnectionError):
            await engine.send()
        await executor.worker.drain()
        assert [span.name for span in exporter.get_finished_spans()] == ["call (dropped)"]
    finally:
        await engine.executor.driver.close()
        exporter.shutdown()


async def test_a_run_planned_again_drops_the_first_plans_call(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process synced meanwhile: the script writes nothing and the event is planned
    again. The eager call of the first plan is dropped; the run completes from a call of
    the second (whichever kind), once."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    other = Registry(redis)  # f now has no retries: one attempt
    body = {"appName": "app", "url": "http://app.test/api/inngest", "functions": [
        {"id": "f", "name": "f", "triggers": [{"event": "test/go"}],
         "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 0},
                            "runtime": {"type": "http",
                                        "url": "http://app.test/api/inngest?fnId=f"}}}}]}
    await other.sync(body, orjson.dumps(body), engine.clock())
    handled = _spy_on_handle(executor, monkeypatch)
    answers = iter(range(1, 100))
    running, most = 0, 0

    async def answer(call: Call) -> Outcome:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)  # still running when the event has been stored
        running -= 1
        return Completed(f"answer {next(answers)}")

    engine.answer(answer)
    [run_id] = await engine.send()
    await executor.worker.drain()
    assert [c.plan_only for c in engine.driver.calls] == [True, False]
    assert most == 1  # the first call is made again after the eager one, never beside it
    assert [item.max_attempts for item in handled] == [1]  # the call as stored the 2nd time
    run = await engine.run(run_id)
    assert run["status"] == "Completed" and run["output"] == "answer 2"
    assert await total(redis, keys.runs) == 1


async def test_a_worker_of_one_slot_calls_eagerly(engine: Engine, redis: Redis) -> None:
    """The slot the eager call takes is the one the ingest holds for the run."""
    executor = _eager_worker(engine)
    executor.worker.slots = 1
    await engine.sync({"id": "f"})
    [run_id] = await engine.send()
    await executor.worker.drain()
    assert [c.plan_only for c in engine.driver.calls] == [True]
    assert (await engine.run(run_id))["status"] == "Completed"
    assert executor.worker.free_slots() == 1


async def test_a_busy_worker_calls_after_the_script(engine: Engine, redis: Redis) -> None:
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    release = asyncio.Event()

    async def answer(call: Call) -> Outcome:
        stored = bool(await redis.exists(keys.run(call.run_id)))
        calls.append((call.plan_only, stored))
        await release.wait()
        return Completed("done")

    calls: list[tuple[bool, bool]] = []
    engine.answer(answer)
    first = await engine.send()
    await asyncio.sleep(0.05)  # the first call is in flight
    second = await engine.send()
    await asyncio.sleep(0.05)
    release.set()
    await executor.worker.drain()
    assert calls == [(True, False), (False, True)]
    for run_id in first + second:
        assert (await engine.run(run_id))["status"] == "Completed"


@pytest.mark.parametrize("config", [
    {"idempotency": "event.data.n"},
    {"rateLimit": {"limit": 100, "period": "1m"}},
    {"concurrency": [{"limit": 2}]},
    {"debounce": {"period": "1s"}},
    {"singleton": {"mode": "skip"}},
], ids=["idempotency", "rate-limit", "concurrency", "debounce", "singleton"])
async def test_runs_whose_start_the_script_decides_are_not_called_eagerly(
        engine: Engine, redis: Redis, config: dict[str, Any]) -> None:
    """The same event starts a plain function `g` too: only its first call is eager."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f", **config}, {"id": "g"})
    runs = await engine.send({"n": 1})
    engine.clock.advance(2000)  # a debounced run is due after its period
    await engine.run_until_idle()
    function_of = {r: (await engine.run(r))["function_id"] for r in runs}
    calls = {(function_of[c.run_id], c.plan_only) for c in engine.driver.calls}
    assert calls == {("f", False), ("g", True)}
    assert executor.worker.free_slots() == executor.worker.slots


async def test_a_run_stored_in_its_functions_home_shard_is_not_called_eagerly(
        engine: Engine, redis: Redis) -> None:
    """Priority gives a function a home shard: its runs are stored by a script of their
    own, after the event's, and never handed to the accepting worker there; a run whose
    event lands in the home shard is stored with it, and may be."""
    if keys.shard_count() == 1:
        pytest.skip("one shard: every run is stored with its event")
    executor = _eager_worker(engine)
    await engine.sync({"id": "f", "priority": {"run": "0"}})
    away = 0
    for n in range(1, 4 * keys.shard_count()):  # events land in every shard
        [run_id] = await engine.send()
        await executor.worker.drain()
        await engine.run_until_idle()
        call = next(c for c in engine.driver.calls if c.run_id == run_id)
        if keys.shard_of(run_id) != keys.shard_of(engine.event_id(n)):
            away += 1
            assert not call.plan_only
    assert away


async def test_a_run_whose_state_goes_by_reference_is_not_called_eagerly(
        engine: Engine, redis: Redis) -> None:
    """Above USE_API_BYTES the call carries no event: the SDK reads it back from the API,
    which cannot serve a run not stored yet."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    await engine.send({"blob": "x" * USE_API_BYTES})
    await executor.worker.drain()
    assert [c.plan_only for c in engine.driver.calls] == [False]


async def test_an_eager_calls_lease_is_renewed_once_it_exists(
        engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call longer than a third of the lease starts renewing it; an eager one only once
    the script leased it (a renewal before that finds no lease, and would give up)."""
    executor = _eager_worker(engine)
    executor.worker.lease_ms = executor.ingest.lease_ms = 300  # renewed every 100 ms
    await engine.sync({"id": "f"})
    stored = executor.ingest._store

    async def slow_store(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(0.15)  # the script answers after the first renewal would be due
        return await stored(*args, **kwargs)

    monkeypatch.setattr(executor.ingest, "_store", slow_store)
    renewals: list[bool] = []
    renew = executor.worker.queue.renew

    async def spy(*args: Any, **kwargs: Any) -> bool:
        renewals.append(await renew(*args, **kwargs))
        return renewals[-1]

    monkeypatch.setattr(executor.worker.queue, "renew", spy)

    async def answer(call: Call) -> Outcome:
        await asyncio.sleep(0.5)
        return Completed("done")

    engine.answer(answer)
    [run_id] = await engine.send()
    await executor.worker.drain()
    assert renewals and all(renewals), renewals
    assert (await engine.run(run_id))["status"] == "Completed"


async def test_an_event_with_a_sender_id_is_not_called_eagerly(engine: Engine,
                                                              redis: Redis) -> None:
    """Its id may have been stored already (a sender's retry): the script decides."""
    executor = _eager_worker(engine)
    await engine.sync({"id": "f"})
    await engine.send()
    await executor.worker.drain()  # idle again
    await engine.send(event_id="order-1")
    await executor.worker.drain()
    assert [c.plan_only for c in engine.driver.calls] == [True, False]


@pytest.mark.parametrize("eager_calls", [True, False])
async def test_the_service_wires_eager_calls_unless_turned_off(
        engine: Engine, redis: Redis, eager_calls: bool) -> None:
    """As `python -m executor dev` builds it (a worker in the process), with and without
    --no-eager-calls."""
    await engine.executor.driver.close()
    engine.executor = Executor(redis, Settings(retry_interval_s=1.0, eager_calls=eager_calls),
                               engine.clock)
    engine.executor.worker.driver = engine.driver
    await engine.sync({"id": "f"})
    [run_id] = await engine.send()
    await engine.executor.worker.drain()
    assert [c.plan_only for c in engine.driver.calls] == [eager_calls]
    assert (await engine.run(run_id))["status"] == "Completed"
