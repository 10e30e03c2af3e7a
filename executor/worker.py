"""Workers: lease queue items, call the app, and hand each answer to the op switch.

One leasing loop per process fills up to `slots` concurrent calls. After a step completes,
the next call of the same run comes back from the complete script already leased, so a run
moves step to step without passing through the queue again (immediate execution). Items
that make no call (timers, follow-ups of pauses) go to `timers.Timers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Callable

from inngest_like import wire

from . import ai_gateway
from .agent_options import step_limits
from .call_watch import CallWatch
from .clock import Clock, system_ms
from .driver import AppDriver, CallError, Ops, Outcome
from .ingest import Gate, Ingest
from .opcodes import MAX_STEPS, Opcodes
from .operations import Operations
from .queue import Queue, QueueItem
from .registry import Registry
from .state import CallState, RunState, call_body
from .timers import Timers
from .waits import Waits

log = logging.getLogger("inngest_like.executor")

_STEP_ID = re.compile(r"([?&])stepId=[^&]*")
MAX_IDLE_CALLS = 25  # calls in a row that make no progress before a run fails (a looping SDK)


def _planned_first(outcome: Outcome) -> bool:
    """An eager call's answer that only planned the run's first step.run (as asked): a
    lone StepPlanned without limits. (A group, a step with limits, a sleep, a wait, an
    end: the answer a normal call gives too.)"""
    return (isinstance(outcome, Ops) and len(outcome.ops) == 1
            and wire.Opcode.parse(outcome.ops[0].get("op")) is wire.Opcode.STEP_PLANNED
            and not step_limits(outcome.ops))


def step_url(url: str, step_id: str) -> str:
    if _STEP_ID.search(url):
        return _STEP_ID.sub(lambda m: f"{m.group(1)}stepId={step_id}", url)
    return url + ("&" if "?" in url else "?") + f"stepId={step_id}"


class Worker:
    def __init__(
        self,
        queue: Queue,
        state: RunState,
        registry: Registry,
        driver: AppDriver,
        ingest: Ingest,
        operations: Operations,
        *,
        sign: Callable[[bytes], tuple[bytes, dict[str, str]]] = lambda body: (body, {}),
        clock: Clock = system_ms,
        slots: int = 64,
        lease_ms: int = 20_000,
        retry_interval_s: float | None = None,
        max_idle_calls: int = MAX_IDLE_CALLS,
        gateway: ai_gateway.AIGateway | None = None,
    ) -> None:
        self.queue = queue
        self.state = state
        self.registry = registry
        self.driver = driver
        self.sign = sign
        self.clock = clock
        self.slots = slots
        self.lease_ms = lease_ms
        self.operations = operations  # usage and budgets, timeouts, stalls, traces, metrics
        waits = Waits(state, registry, ingest, clock)
        self.opcodes = Opcodes(state, ingest, waits, clock=clock, lease_ms=lease_ms,
                               retry_interval_s=retry_interval_s, max_idle_calls=max_idle_calls,
                               gateway=gateway or ai_gateway.AIGateway(), renewing=self.renewing,
                               retry_gate=operations.retry_gate,
                               meter=operations.gateway_usage)
        self.timers = Timers(state, ingest, waits, self.opcodes, clock)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        # slots promised to ingests in flight (a new run's first call handed straight here):
        # counted as taken from the moment a script may hand one over, so that many events
        # accepted at once never start more calls than `slots`
        self._claimed = 0
        self._stopping = False
        self.calls_made = 0  # calls this process made to apps, shown by /health

    # -- the loop -------------------------------------------------------------------------
    async def run_forever(self) -> None:
        reaper = asyncio.create_task(self._reap_forever())
        try:
            while not self._stopping:
                await self._fill_slots(block=True)
        finally:
            reaper.cancel()

    async def run_until_idle(self) -> None:
        """Work until nothing is due and nothing is in flight (tests, benchmarks)."""
        while True:
            # with every slot taken, wait for a call to end below (not in _fill_slots, which
            # would come back with nothing leased and look idle)
            leased = await self._fill_slots(block=False) if self.free_slots() else 0
            if not leased and not self._inflight:
                return
            if self._inflight:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)

    def stop(self) -> None:
        self._stopping = True

    def free_slots(self) -> int:
        """How many more calls this worker can start now (0 once stopping)."""
        return 0 if self._stopping else max(0, self.slots - len(self._inflight) - self._claimed)

    def claim(self, wanted: int) -> int:
        """Hold up to `wanted` free slots for calls an ingest script may hand over; returns
        how many. The ingest gives them back (`unclaim`) just before it adopts what it got."""
        granted = min(max(0, wanted), self.free_slots())
        self._claimed += granted
        return granted

    def unclaim(self, count: int) -> None:
        if count:
            self._claimed -= count
            self._slot_free.set()

    def eager(self, item: QueueItem, token: str, state: CallState) -> Gate | None:
        """Start a new run's first call while the ingest script that stores the run is still
        running, when this worker is idle (no call in flight: under load the call waits for
        the script, as every other does). Returns the gate the ingest
        resolves with a Handover once the script handed `item` to this process, or with
        None when it did not (nothing stored): the call's answer is acted on only after
        that, so nothing happens to a run that was never stored, and its lease is renewed
        only from then. The call is plan-only (`disable_immediate_execution`): the app runs
        the code before the first step, but no step.run, until the run is stored. None: not
        started."""
        if self._inflight or self._stopping:  # (its slot: one the ingest claimed for it)
            return None
        fn = self.registry.functions.get(item.fn_id)
        if fn is None or self.operations.usage.over_budget(fn, state.run) is not None:
            return None  # its call would write to the run (fail it) before it is stored
        gate: Gate = asyncio.get_running_loop().create_future()
        self._start(item, token, state, gate)
        return gate

    def adopt(self, items: list[QueueItem], token: str,
              states: dict[str, CallState] | None = None) -> None:
        """Start work on leased items: this loop's, or ones leased to this process elsewhere
        (ingest hands a new run's first call here, skipping the queue round trip). `states`:
        runs' states read already, by item id."""
        for item in items:
            self._start(item, token, (states or {}).get(item.id))

    def _start(self, item: QueueItem, token: str, state: CallState | None,
               gate: Gate | None = None) -> None:
        task = asyncio.create_task(self._work(item, token, state, gate))
        self._inflight.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _fill_slots(self, *, block: bool) -> int:
        free = self.slots - len(self._inflight) - self._claimed
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return 0
        now = self.clock()
        self._claimed += free  # the slots this lease may fill: no ingest hands them out too
        leased, states = None, {}
        try:
            leased = await self.queue.lease(now, self.lease_ms, free)
            states = await self._preload(leased[0])
        except Exception:
            log.exception("leasing failed; retrying in 1 s")
        finally:
            self.unclaim(free)
        if leased is None:
            await asyncio.sleep(1)
            return 0
        items, token, next_due = leased
        self.adopt(items, token, states)
        if not items and block:
            wait_s = 1.0 if next_due is None else min(1.0, (next_due - now) / 1000)
            if wait_s > 0:
                try:
                    await self.queue.wait(wait_s)
                except Exception:
                    log.exception("waiting on the queue failed; retrying in 1 s")
                    await asyncio.sleep(1)
        return len(items)

    async def _preload(self, items: list[QueueItem]) -> dict[str, CallState]:
        """The state of every run a lease handed a call of, read in one round trip (each
        call would otherwise read its own: a round trip per run started in a burst). Read
        after the lease, as each call's own read would be."""
        calls = [item for item in items if item.kind == "call"]
        if len(calls) < 2:
            return {}  # one call reads its own state: no round trip saved
        try:
            states = await self.state.load_many([item.run_id for item in calls], calls)
        except Exception:
            log.exception("reading the states of %d leased calls failed; each reads its own",
                          len(calls))
            return {}
        # a run that is gone is read again by its call (None means "not read" there)
        return {item.id: state for item, state in zip(calls, states, strict=True)
                if state is not None}

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("worker task failed", exc_info=task.exception())

    async def _reap_forever(self) -> None:
        while True:
            try:
                moved = await self.queue.reap(self.clock())
                if moved:
                    self.operations.metrics.leases_expired(moved)
                    log.info("reaped %d queue items whose lease expired", moved)
            except Exception:
                log.exception("reaping failed")
            await asyncio.sleep(max(self.lease_ms / 2000, 0.2))

    # -- one run, step after step -----------------------------------------------------------
    async def _work(self, item: QueueItem, token: str, state: CallState | None = None,
                    gate: Gate | None = None) -> None:
        next_item: QueueItem | None = item
        while next_item is not None:
            next_item, state = await self.execute(next_item, token, state, gate)
            gate = None

    async def execute(
        self, item: QueueItem, token: str, state: CallState | None = None,
        gate: Gate | None = None,
    ) -> tuple[QueueItem | None, CallState | None]:
        """Make one call for `item` and record its outcome; returns the run's next item when
        it came back leased to us (with the run's state read in the same round trip as the
        script that handed it over, so a cancel before that is seen here). With `gate`, an
        eager first call (see `eager`)."""
        if item.kind != "call":
            await self.timers.fire(item, token, self.clock())
            return None, None
        if state is None:
            state = await self.state.load(item.run_id, item)
        now = self.clock()
        if state is None or state.status != "Running":
            await self.state.drop(item, token, now)  # run gone or ended
            return None, None
        if state.registry_version != self.registry.version:
            await self.registry.refresh(state.registry_version)
        fn = self.registry.functions.get(item.fn_id)
        if fn is None:
            await self.opcodes.fail(item, token, now, f"function {item.fn_id!r} is not synced")
            return None, None
        if len(state.stack) >= MAX_STEPS:
            await self.opcodes.fail(item, token, now,
                                    f"a run may have at most {MAX_STEPS} steps")
            return None, None
        watch = self.operations.watch(item, token, state, fn, now)
        if watch.stop is not None:  # the run spent its budget: no further call, no retry
            log.warning("run %s fails: %s", item.run_id, watch.stop["message"])
            await self.opcodes.end(item, token, now, "Failed", watch.stop)
            return None, None
        body = call_body(item, state, plan_only=gate is not None)
        outcome = await self._call(item, token, step_url(fn.url, item.step_id), body, watch,
                                   gate)
        if gate is not None:
            handover = await gate
            if handover is None or handover.state is not None:
                # the run was not stored for us (its answer means nothing), or was planned
                # again meanwhile: its first call is made again, with the run as stored
                watch.drop(self.clock())
                return (handover.item, handover.state) if handover else (None, None)
            state = dataclasses.replace(state, redis_ms=handover.clock)
            if _planned_first(outcome):
                # the code before the first step ran; the run's real first call runs it now
                await watch.record(outcome, self.clock())
                watch.end(outcome, self.clock())
                return item, state
        await watch.record(outcome, self.clock())
        # the script that records the outcome takes this: the run's execution time, and
        # the attempt in the step's record
        self.state.note_call(item.id, now, self.clock())
        try:
            if watch.ended is not None:  # step timeout or silence: a failed attempt
                await self.opcodes.failed_attempt(item, token, watch.ended, self.clock(),
                                                  watch.step_op())
                return None, None
            return await self.opcodes.handle(item, token, state, outcome, now)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # an answer the parser let through but we cannot act on: this attempt fails
            # (and counts), the executor goes on
            message = f"cannot act on the SDK's answer: {exc.__class__.__name__}: {exc}"
            log.warning("run %s: %s", item.run_id, message)
            await self.opcodes.failed_attempt(item, token, CallError(message, {
                "name": "Error", "message": message, "error": message}), self.clock())
            return None, None
        finally:
            watch.end(outcome, self.clock())
            self.state.calls.pop(item.id, None)

    async def _call(self, item: QueueItem, token: str, url: str, body: bytes,
                    watch: CallWatch, gate: Gate | None = None) -> Outcome:
        self.calls_made += 1
        body, signature = self.sign(body)
        async with self.renewing(item, token, gate):
            return await watch.run(self.driver.call(
                url,
                body,
                {"Content-Type": "application/json", "X-Inngest-Req-Version": "2",
                 "X-Run-ID": item.run_id, "X-Inngest-Step-ID": item.step_id,
                 # checkpoints of this call name it by its lease (checkpoint.lua)
                 "X-Inngest-Generation-Id": token,
                 wire.FEATURES_HEADER: wire.FEATURES,
                 **signature, **watch.headers},
            ))

    @contextlib.asynccontextmanager
    async def renewing(self, item: QueueItem, token: str,
                       gate: Gate | None = None) -> AsyncIterator[None]:
        """Keep an item's lease while the block runs (a call out). The renewer stops on a
        flag as well as on cancellation: a cancellation landing inside a Redis command
        while a cluster fails over can be swallowed by the client, and a renewer left
        running would hold the lease of a call that ended, so its run would never be
        retried."""
        ended = asyncio.Event()
        renewer = asyncio.create_task(self._renew(item, token, ended, gate))
        try:
            yield
        finally:
            ended.set()
            renewer.cancel()

    async def _renew(self, item: QueueItem, token: str, ended: asyncio.Event,
                     gate: Gate | None = None) -> None:
        # an eager call: its lease exists once the ingest script handed it over (shielded:
        # this renewer is cancelled when the call ends, which must not cancel the gate)
        if gate is not None and await asyncio.shield(gate) is None:
            return
        while not ended.is_set():
            await asyncio.sleep(self.lease_ms / 3000)
            if ended.is_set():
                return
            try:
                now = self.clock()
                renewed = await self.queue.renew(item, token, now, now + self.lease_ms)
            except Exception:
                log.warning("renewing the lease on %s failed; trying again", item.id)
                continue  # a passing Redis error must not let the lease lapse mid-call
            if not renewed:
                log.warning("lease on %s was lost while its call was in flight", item.id)
                return
