"""Queue items that make no call: a pause's timeout, a run's start and finish timeouts, a
sleep inside a parallel group, the follow-ups stored with a pause, and the intake of
accepted events whose accepting process died before doing it. Each fires once,
then its item is dropped (a group sleep's memo is saved by the script that drops it)."""

from __future__ import annotations

import logging

import orjson

from inngest_like.wire import Opcode

from .clock import Clock
from .ingest import Ingest
from .opcodes import Opcodes
from .queue import (
    EmitInvoke,
    FinishTimeout,
    GroupPause,
    GroupSleep,
    Intake,
    PauseTimeout,
    QueueItem,
    ScanWait,
    StartTimeout,
)
from .state import RunState
from .step_record import StepRecord
from .waits import Waits

log = logging.getLogger("inngest_like.executor")


class Timers:
    def __init__(self, state: RunState, ingest: Ingest, waits: Waits, opcodes: Opcodes,
                 clock: Clock) -> None:
        self.state = state
        self.ingest = ingest
        self.waits = waits
        self.opcodes = opcodes
        self.clock = clock

    async def fire(self, item: QueueItem, token: str, now: int) -> None:
        try:
            timer = item.timer
        except (KeyError, TypeError) as exc:
            # nothing can act on it; keeping it would only retry it forever
            log.error("dropping queue item %s: unreadable %s payload (%s)", item.id,
                      item.kind, exc)
            await self.state.drop(item, token, now)
            return
        if isinstance(timer, GroupSleep):
            record = StepRecord(item.step_id, timer.name or item.step_id, "Sleep", "Completed",
                                1, now, now)
            await self.state.complete(
                item, token, now, step_hash=item.step_id, memo=b"null", record=record,
                next_due=now, next_template=item.template(step_id="step", attempt=0))
            return
        if isinstance(timer, GroupPause):
            await self._start_group_pause(item, token, timer, now)  # pause.lua drops the item
            return
        if isinstance(timer, PauseTimeout):
            await self.waits.timed_out(timer, now)
        elif isinstance(timer, EmitInvoke):
            await self.waits.emit_invoke(timer, now)
        elif isinstance(timer, ScanWait):
            await self.waits.scan(timer)
        elif isinstance(timer, Intake):  # the process that accepted the events died first
            await self.ingest.follow_up(timer)
        elif isinstance(timer, StartTimeout):
            # cancelled only if its first call is still queued and not leased, checked in
            # the same script that cancels: a run starting meanwhile is left alone
            await self.ingest.cancel(
                item.run_id, f"the run did not start within {timer.after_ms / 1000:g}s "
                "(timeouts.start)", unless_started=f"{item.run_id}:1")
        elif isinstance(timer, FinishTimeout):
            await self.ingest.cancel(item.run_id, f"the run did not finish within "
                                     f"{timer.after_ms / 1000:g}s (timeouts.finish)")
        await self.state.drop(item, token, now)

    async def _start_group_pause(self, item: QueueItem, token: str, timer: GroupPause,
                                 now: int) -> None:
        """A wait or invoke of a parallel group begins as if it had been reported alone, at
        the time the group was reported (a wait matches the events since then)."""
        spec = orjson.loads(timer.spec)
        op, started = spec["op"], int(spec["started"])
        state = await self.state.load(item.run_id)
        if state is None or state.status != "Running":
            await self.state.drop(item, token, now)
            return
        try:
            if Opcode.parse(op["op"]) is Opcode.INVOKE_FUNCTION:
                await self.waits.invoke(item, token, op, started, now)
            else:
                await self.waits.wait_for_event(item, token, state, op, started, now,
                                                since_ms=spec.get("since"))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            await self.opcodes.fail(item, token, now, f"cannot act on the SDK's answer: "
                                    f"{exc.__class__.__name__}: {exc}")
