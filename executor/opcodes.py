"""The op switch: what each answer of the SDK does to the run (protocol §5, §6).

200 ends the run; an error retries or fails it; 206 carries opcodes: StepRun saves the memo
and schedules the next call, Sleep schedules it later, StepPlanned fans out a parallel
group, WaitForEvent / InvokeFunction park the run on a pause (`waits.Waits`), StepError
retries with backoff. Every write is one lease-guarded script in `state.RunState`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson

from inngest_like.wire import Opcode, memo_data, memo_error

from . import agent_options, ai_gateway, backoff, durations, times
from .clock import Clock
from .driver import CallError, Completed, Ops, Outcome
from .events import FINISHED
from .ingest import Ingest
from .pauses import cancel_refs
from .queue import QueueItem
from .state import CallState, RunState
from .step_record import StepRecord, step_times
from .waits import MAX_WAIT_MS, Waits

log = logging.getLogger("inngest_like.executor")

MAX_STEPS = 1000  # Inngest's limit of ops per run: also stops an SDK that loops
# what each opcode of a parallel group becomes: a targeted call (an AIGateway is made when
# the SDK reports it for its own call), a timer, or a pause started by its own queue item
GROUP_ITEM_KINDS = {Opcode.STEP_PLANNED: "call", Opcode.AI_GATEWAY: "call",
                    Opcode.SLEEP: "sleep", Opcode.WAIT_FOR_EVENT: "pause",
                    Opcode.INVOKE_FUNCTION: "pause"}
Next = tuple[QueueItem | None, CallState | None]  # the run's next item, leased to us, if any
# asked before a retry is scheduled: an error that fails the run instead (a spent budget)
RetryGate = Callable[[QueueItem], Awaitable[dict[str, Any] | None]]
# told the tokens a call the executor made itself used (step.ai.infer): item, its lease
# token, the op, the model, {input_tokens, output_tokens}
UsageMeter = Callable[[QueueItem, str, dict[str, Any], str | None, dict[str, int]],
                      Awaitable[None]]


async def _always_retry(item: QueueItem) -> None:
    return None


async def _unmetered(item: QueueItem, token: str, op: dict[str, Any], model: str | None,
                     tokens: dict[str, int]) -> None:
    return None


def wake_time_ms(op: dict[str, Any], now_ms: int) -> int:
    """Wake time of a Sleep op: `opts.until`, `opts.duration`, else `name` (a time or a
    duration), capped at a year."""
    opts = op.get("opts") or {}
    for value in (opts.get("until"), opts.get("duration"), op.get("name")):
        if not isinstance(value, str) or not value:
            continue
        if len(value) >= 10:
            try:
                return max(now_ms, min(times.parse_ms(value), now_ms + MAX_WAIT_MS))
            except ValueError:
                pass
        try:
            return now_ms + min(durations.parse_ms(value), MAX_WAIT_MS)
        except ValueError:
            continue
    raise ValueError(f"Sleep op {op.get('id')!r}: no readable duration or time")


def step_memo(op: dict[str, Any], kind: Opcode | None) -> bytes:
    """The memo a StepRun (or a legacy Step) op saves."""
    data = op.get("data")
    if kind is Opcode.STEP and isinstance(data, dict) and set(data) in ({"data"}, {"error"}):
        return orjson.dumps(data)  # already a memo
    return orjson.dumps(memo_data(data))


def _unfit(ops: list[dict[str, Any]], kinds: list[Opcode | None],
           allowed: Collection[Opcode], place: str) -> str | None:
    """What keeps these ops from being acted on together (`place`: where they came), for
    the run's error; None when nothing does."""
    odd = [str(op.get("op")) for op, kind in zip(ops, kinds, strict=True) if kind not in allowed]
    if odd:
        return f"{', '.join(odd)} {place}"
    if any(not op.get("id") for op in ops):
        return f"an opcode without an id {place}"
    return None


def _error(message: str) -> dict[str, Any]:
    return {"name": "Error", "message": message, "error": message}


class Opcodes:
    def __init__(self, state: RunState, ingest: Ingest, waits: Waits, *, clock: Clock,
                 lease_ms: int, retry_interval_s: float | None, max_idle_calls: int,
                 gateway: ai_gateway.AIGateway,
                 renewing: Callable[[QueueItem, str], AbstractAsyncContextManager[None]],
                 retry_gate: RetryGate = _always_retry,
                 meter: UsageMeter = _unmetered) -> None:
        self.gateway = gateway  # step.ai.infer's provider calls
        self.renewing = renewing  # keeps an item's lease while the executor itself calls out
        self.state = state
        self.ingest = ingest
        self.waits = waits
        self.clock = clock
        self.lease_ms = lease_ms
        self.retry_interval_s = retry_interval_s
        self.max_idle_calls = max_idle_calls
        self.retry_gate = retry_gate
        self.meter = meter

    async def handle(self, item: QueueItem, token: str, state: CallState, outcome: Outcome,
                     started: int) -> Next:
        now = self.clock()
        if isinstance(outcome, Completed):
            await self.end(item, token, now, "Completed", outcome.output, state=state)
            return None, None
        if isinstance(outcome, CallError):
            await self.failed_attempt(item, token, outcome, now)
            return None, None
        # the SDK's execution version, echoed on the run's later calls: a call that ends the
        # run has none (a round trip saved on every run done in one call)
        if outcome.version is not None and outcome.version != state.version \
                and not outcome.ends():
            await self.state.set_version(item.run_id, outcome.version)
        return await self._ops(item, token, state, outcome, started, now)

    # -- the run's end and failed attempts ----------------------------------------------
    async def end(self, item: QueueItem, token: str, now: int, status: str, output: Any,
                  record: StepRecord | None = None, *, event_error: Any = None,
                  state: CallState | None = None,
                  steps: list[tuple[str, bytes, StepRecord]] | None = None) -> None:
        """End the run, then emit its end events (which on_failure and invoke wait for).
        With the run's `state`, its cancel listeners go with its end (they are known from
        its trigger), so a completed run nothing waits for still ends quietly."""
        fn = self.ingest.registry.functions.get(item.fn_id)
        trigger = state.run.get(b"event") if state is not None else None
        listeners = (cancel_refs(item.run_id, fn.cancel, orjson.loads(trigger))
                     if fn is not None and fn.cancel and trigger else None)
        ended = await self.state.finish(item, token, now, status, output, record,
                                        event_error=event_error,
                                        unheard=self.ingest.registry.unheard(FINISHED),
                                        listeners=listeners, steps=steps)
        if ended.code == 1:
            await self.ingest.run_ended(item.run_id)
        elif ended.code == 4 and ended.fields is not None:  # nothing to emit, metrics only
            self.ingest.run_ended_quietly(ended.fields)

    async def fail(self, item: QueueItem, token: str, now: int, message: str) -> None:
        """Fail the run for good with a readable reason (no retry can help)."""
        log.warning("run %s fails: %s", item.run_id, message)
        await self.end(item, token, now, "Failed", _error(message))

    async def failed_attempt(self, item: QueueItem, token: str, error: CallError, now: int,
                             op: dict[str, Any] | None = None) -> None:
        attempts = item.attempt + 1
        retry = error.retriable and attempts < item.max_attempts
        stop = await self.retry_gate(item) if retry else None  # e.g. the budget is spent
        if retry and stop is None:
            due = backoff.retry_after_ms(error.retry_after, now) or (
                now + backoff.delay_ms(item.attempt, self.retry_interval_s))
            record = (StepRecord.of_op(op, "Retrying", attempts, now, now, error=error.error,
                                       retry_at=due) if op else None)
            if await self.state.retry(item, token, due, error.message, record) == 0:
                log.warning("lease on %s lost before its retry was recorded", item.id)
            return
        record = StepRecord.of_op(op, "Failed", attempts, now, now, error=error.error) \
            if op else None
        output = error.body if error.body is not None else error.error  # the SDK's, as sent
        if stop is not None:  # the budget is spent: the run fails with that, not the step
            log.warning("run %s fails: %s", item.run_id, stop["message"])
            output = stop
        await self.end(item, token, now, "Failed", output, record,
                       event_error=stop or error.error)

    # -- the next call ----------------------------------------------------------------------
    async def next(self, item: QueueItem, token: str, now: int, *,
                   op: dict[str, Any] | None = None, memo: bytes = b"",
                   record: StepRecord | None = None, due: int | None = None) -> Next:
        """Save the step's memo (if any) and schedule the run's next discovery call."""
        code, leased, next_state = await self.state.complete(
            item, token, now,
            step_hash=(op or {}).get("id", "") if memo else "",
            memo=memo,
            record=record,
            next_due=now if due is None else due,
            next_template=item.template(step_id="step", attempt=0),
            lease_expiry=now + self.lease_ms,
            max_idle_calls=self.max_idle_calls,
        )
        if code == 0:
            log.warning("lease on %s was lost; the call's outcome is dropped", item.id)
        elif code == 4:
            await self.fail(item, token, now, (
                f"the SDK made no progress in {self.max_idle_calls} calls in a row (it "
                "reported no new step, or only steps already done); is the function "
                "deterministic?"))
        return leased, next_state

    async def _ops(self, item: QueueItem, token: str, state: CallState, outcome: Ops,
                   started: int, now: int) -> Next:
        ops = outcome.ops
        if not ops:
            # an empty 206 would otherwise leave the run with nothing to do, Running forever
            message = "the SDK answered 206 with no opcodes"
            await self.failed_attempt(item, token, CallError(message, _error(message)), now)
            return None, None
        if len(ops) > 1 and outcome.ends():
            await self._complete_with_steps(item, token, state, ops, started, now)
            return None, None
        if len(ops) > 1 or Opcode.parse(ops[0]["op"]) is Opcode.STEP_PLANNED:
            await self._plan(item, token, state, ops, now)
            return None, None
        op = ops[0]
        kind = Opcode.parse(op["op"])
        attempts = item.attempt + 1
        if kind in (Opcode.STEP_RUN, Opcode.STEP):
            rec = StepRecord.of_op(op, "Completed", attempts, started, now)
            return await self.next(item, token, now, op=op, memo=step_memo(op, kind), record=rec)
        if kind is Opcode.STEP_ERROR and not outcome.no_retry and attempts < item.max_attempts:
            error = op.get("error") or {}
            await self.failed_attempt(item, token, CallError(
                str(error.get("message", "step failed")), error, True, outcome.retry_after,
            ), now, op)
            return None, None
        if kind in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
            failure = op.get("error") or {"name": "Error", "message": "step failed"}
            rec = StepRecord.of_op(op, "Failed", attempts, started, now, error=failure)
            return await self.next(item, token, now, op=op,
                                   memo=orjson.dumps(memo_error(failure)), record=rec)
        if kind is Opcode.SLEEP:
            try:
                wake = wake_time_ms(op, now)
            except ValueError as exc:
                await self.unsupported(item, token, now, str(exc))
                return None, None
            rec = StepRecord.of_op(op, "Sleeping", attempts, started, wake, until=wake)
            return await self.next(item, token, now, op=op, memo=b"null", record=rec, due=wake)
        if kind is Opcode.DISCOVERY_REQUEST:
            return await self.next(item, token, now)
        if kind is Opcode.RUN_COMPLETE:
            await self.end(item, token, now, "Completed", op.get("data"))
            return None, None
        if kind is Opcode.WAIT_FOR_EVENT:
            await self.waits.wait_for_event(item, token, state, op, started, now)
            return None, None
        if kind is Opcode.INVOKE_FUNCTION:
            await self.waits.invoke(item, token, op, started, now)
            return None, None
        if kind is Opcode.AI_GATEWAY:
            return await ai_gateway.infer(self, item, token, op, started)
        await self.unsupported(item, token, now, f"the {op['op']} opcode")
        return None, None

    async def _complete_with_steps(self, item: QueueItem, token: str, state: CallState,
                                   ops: list[dict[str, Any]], started: int, now: int) -> None:
        """`[StepRun..., RunComplete]`: the function returned after steps it ran in this call
        and had not checkpointed (JS v4, and our SDK's last step): the steps are saved with
        the run's end, in one script."""
        *steps, done = ops
        kinds = [Opcode.parse(op.get("op")) for op in steps]
        unfit = _unfit(steps, kinds, (Opcode.STEP_RUN, Opcode.STEP), "before RunComplete")
        if unfit:
            await self.unsupported(item, token, now, unfit)
            return
        saved = [(str(op["id"]), step_memo(op, kind),
                  StepRecord.of_op(op, "Completed", item.attempt + 1,
                                   *step_times(op, started, now)))
                 for op, kind in zip(steps, kinds, strict=True)]
        await self.end(item, token, now, "Completed", done.get("data"), state=state,
                       steps=saved)

    async def _plan(self, item: QueueItem, token: str, state: CallState,
                    ops: list[dict[str, Any]], now: int) -> None:
        """Several steps at once (a parallel group): each StepPlanned (or AIGateway) becomes
        its own targeted call, each Sleep a timer, each WaitForEvent or InvokeFunction its own
        pause; the run resumes when all are done (or each, racing)."""
        kinds = [Opcode.parse(op["op"]) for op in ops]
        unfit = _unfit(ops, kinds, GROUP_ITEM_KINDS, "inside a parallel group")
        if unfit:
            await self.unsupported(item, token, now, unfit)
            return
        planned: list[tuple[str, str, int, str]] = []
        for op, kind in zip(ops, kinds, strict=True):
            name = StepRecord.of_op(op, "", 0, 0, 0).name
            if kind is Opcode.SLEEP:
                try:
                    wake = wake_time_ms(op, now)
                except ValueError as exc:
                    await self.unsupported(item, token, now, str(exc))
                    return
                planned.append((str(op["id"]), "sleep", wake, name))
            elif kind is not None and GROUP_ITEM_KINDS[kind] == "pause":
                # started by its own queue item, stored with the group (Timers, GroupPause)
                spec = orjson.dumps({"op": op, "started": now,
                                     "since": state.redis_ms or now}).decode()
                planned.append((str(op["id"]), "pause", now, spec))
            else:
                planned.append((str(op["id"]), "call", now, name))
        race = any((op.get("opts") or {}).get("parallelMode") == "race" for op in ops)
        # steps declaring a timeout or heartbeat timeout: their calls' items carry them
        item = dataclasses.replace(item, limits=agent_options.step_limits(ops))
        if await self.state.plan(item, token, now, planned, race) < 0:
            log.warning("lease on %s was lost; the planned steps are dropped", item.id)

    async def unsupported(self, item: QueueItem, token: str, now: int, what: str) -> None:
        await self.end(item, token, now, "Failed",
                       _error(f"this executor does not support {what} yet"))
