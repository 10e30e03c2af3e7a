"""Workers: lease queue items, call the app, and act on each answer (one switch per opcode).

One leasing loop per process fills up to `slots` concurrent calls. After a step completes,
the next call of the same run comes back from the complete script already leased, so a run
moves step to step without passing through the queue again (immediate execution).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson

from . import ai_gateway, backoff, durations, keys
from .clock import Clock, system_ms
from .driver import CallError, Completed, Driver, Ops, Outcome
from .ingest import INVOKED, Ingest, internal_event
from .queue import Queue, QueueItem
from .registry import Registry
from .state import CallState, RunState, call_body

log = logging.getLogger("inngest_like.executor")

MAX_SLEEP_MS = 366 * 24 * 3600 * 1000
MAX_STEPS = 1000  # Inngest's limit of ops per run: also stops an SDK that loops
# what each opcode of a parallel group becomes: a targeted call (an AIGateway is made when
# the SDK reports it for its own call), a timer, or a pause started by its own queue item
GROUP_ITEM_KINDS = {"stepplanned": "call", "aigateway": "call", "sleep": "sleep",
                    "waitforevent": "pause", "invokefunction": "pause"}
_STEP_ID = re.compile(r"([?&])stepId=[^&]*")


def step_url(url: str, step_id: str) -> str:
    if _STEP_ID.search(url):
        return _STEP_ID.sub(lambda m: f"{m.group(1)}stepId={step_id}", url)
    return url + ("&" if "?" in url else "?") + f"stepId={step_id}"


def _record(op: dict[str, Any], status: str, attempts: int, started: int, ended: int,
            **extra: Any) -> dict[str, Any]:
    """A step record for the steps API: metadata only (outputs stay in the memo)."""
    rec = {
        "id": op.get("id", ""),
        "name": op.get("displayName") or op.get("name") or op.get("id", ""),
        "op": op.get("op"),
        "status": status,
        "attempts": attempts,
        "started_at": started,
        "ended_at": ended,
    }
    rec.update(extra)
    return rec


def _name(op: dict[str, Any]) -> str:
    return str(op.get("displayName") or op.get("name") or op.get("id") or "")


def _sleep_until_ms(op: dict[str, Any], now_ms: int) -> int:
    """Wake time of a Sleep op: `opts.duration`, else `name` (a date or a duration)."""
    opts = op.get("opts") or {}
    for value in (opts.get("until"), opts.get("duration"), op.get("name")):
        if not isinstance(value, str) or not value:
            continue
        if len(value) >= 10:
            try:
                return max(now_ms, min(_parse_time_ms(value), now_ms + MAX_SLEEP_MS))
            except ValueError:
                pass
        try:
            return now_ms + min(durations.parse_ms(value), MAX_SLEEP_MS)
        except ValueError:
            continue
    raise ValueError(f"Sleep op {op.get('id')!r}: no readable duration or time")


def _duration_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value * 1000)
    if isinstance(value, str) and value:
        try:
            return durations.parse_ms(value)
        except ValueError:
            return 0
    return 0


def _deadline_ms(value: Any, now_ms: int) -> int:
    """A wait's timeout: a duration or an RFC 3339 time; empty means already expired."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return max(now_ms, min(_parse_time_ms(value), now_ms + MAX_SLEEP_MS))
        except ValueError:
            pass
    return now_ms + min(_duration_ms(value), MAX_SLEEP_MS)


def _parse_time_ms(value: str) -> int:
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


class Worker:
    def __init__(
        self,
        queue: Queue,
        state: RunState,
        registry: Registry,
        driver: Driver,
        ingest: Ingest,
        *,
        sign: Callable[[bytes], tuple[bytes, dict[str, str]]] = lambda body: (body, {}),
        clock: Clock = system_ms,
        slots: int = 64,
        lease_ms: int = 20_000,
        retry_interval_s: float | None = None,
        gateway: ai_gateway.AIGateway | None = None,
    ) -> None:
        self.gateway = gateway or ai_gateway.AIGateway()  # step.ai.infer's provider calls
        self.queue = queue
        self.state = state
        self.registry = registry
        self.driver = driver
        self.ingest = ingest
        self.sign = sign
        self.clock = clock
        self.slots = slots
        self.lease_ms = lease_ms
        self.retry_interval_s = retry_interval_s
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
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
            leased = await self._fill_slots(block=False)
            if not leased and not self._inflight:
                return
            if self._inflight:
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)

    def stop(self) -> None:
        self._stopping = True

    async def drain(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight))

    async def _fill_slots(self, *, block: bool) -> int:
        free = self.slots - len(self._inflight)
        if free <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return 0
        now = self.clock()
        try:
            items, token, next_due = await self.queue.lease(now, self.lease_ms, free)
        except Exception:
            log.exception("leasing failed; retrying in 1 s")
            await asyncio.sleep(1)
            return 0
        for item in items:
            task = asyncio.create_task(self._work(item, token))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        if not items and block:
            wait_s = 1.0 if next_due is None else min(1.0, (next_due - now) / 1000)
            if wait_s > 0:
                try:
                    await self.queue.wait(wait_s)
                except Exception:
                    log.exception("waiting on the queue failed; retrying in 1 s")
                    await asyncio.sleep(1)
        return len(items)

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
                    log.info("reaped %d queue items whose lease expired", moved)
            except Exception:
                log.exception("reaping failed")
            await asyncio.sleep(max(self.lease_ms / 2000, 0.2))

    # -- one run, step after step -----------------------------------------------------------
    async def _work(self, item: QueueItem, token: str) -> None:
        state: CallState | None = None
        next_item: QueueItem | None = item
        while next_item is not None:
            next_item, state = await self.execute(next_item, token, state)

    async def execute(
        self, item: QueueItem, token: str, state: CallState | None = None
    ) -> tuple[QueueItem | None, CallState | None]:
        """Make one call for `item` and record its outcome; returns the run's next item when
        it came back leased to us."""
        if item.kind != "call":
            await self._timer(item, token, self.clock())
            return None, None
        if state is None:
            state = await self.state.load(item.run_id)
        now = self.clock()
        if state is None or state.status != "Running":
            await self.state.finish(item, token, now, "")  # run gone or ended: drop the item
            return None, None
        if state.registry_version != self.registry.version:
            await self.registry.refresh(state.registry_version)
        fn = self.registry.functions.get(item.fn_id)
        if fn is None:
            error = {"name": "Error", "message": f"function {item.fn_id!r} is not synced"}
            await self._end(item, token, now, "Failed", {"error": error["message"], **error})
            return None, None
        if len(state.stack) >= MAX_STEPS:
            error = {"name": "Error", "error": "too many steps",
                     "message": f"a run may have at most {MAX_STEPS} steps"}
            await self._end(item, token, now, "Failed", error)
            return None, None
        body = call_body(item, state)
        outcome = await self._call(item, token, step_url(fn.url, item.step_id), body)
        try:
            return await self.handle(item, token, state, outcome, now)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # an answer the parser let through but we cannot act on: this attempt fails
            # (and counts), the executor goes on
            message = f"cannot act on the SDK's answer: {exc.__class__.__name__}: {exc}"
            log.warning("run %s: %s", item.run_id, message)
            await self._failed_attempt(item, token, CallError(message, {
                "name": "Error", "message": message, "error": message}), self.clock())
            return None, None

    async def _call(self, item: QueueItem, token: str, url: str, body: bytes) -> Outcome:
        self.calls_made += 1
        renewer = asyncio.create_task(self._renew(item.id, token))
        body, signature = self.sign(body)
        try:
            return await self.driver.call(
                url,
                body,
                {"Content-Type": "application/json", "X-Inngest-Req-Version": "2",
                 "X-Run-ID": item.run_id, "X-Inngest-Step-ID": item.step_id, **signature},
            )
        finally:
            renewer.cancel()

    async def _renew(self, item_id: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                renewed = await self.queue.renew(item_id, token, self.clock() + self.lease_ms)
            except Exception:
                log.warning("renewing the lease on %s failed; trying again", item_id)
                continue  # a passing Redis error must not let the lease lapse mid-call
            if not renewed:
                log.warning("lease on %s was lost while its call was in flight", item_id)
                return

    # -- acting on the answer ---------------------------------------------------------------
    async def handle(
        self, item: QueueItem, token: str, state: CallState, outcome: Outcome, started: int
    ) -> tuple[QueueItem | None, CallState | None]:
        now = self.clock()
        if isinstance(outcome, Completed):
            await self._end(item, token, now, "Completed", outcome.output)
            return None, None
        if isinstance(outcome, CallError):
            await self._failed_attempt(item, token, outcome, now)
            return None, None
        if outcome.version is not None and outcome.version != state.version:
            await self.state.set_version(item.run_id, outcome.version)
        return await self._ops(item, token, state, outcome, started, now)

    async def _failed_attempt(
        self, item: QueueItem, token: str, error: CallError, now: int,
        op: dict[str, Any] | None = None,
    ) -> None:
        attempts = item.attempt + 1
        if error.retriable and attempts < item.max_attempts:
            due = backoff.retry_after_ms(error.retry_after, now) or (
                now + backoff.delay_ms(item.attempt, self.retry_interval_s)
            )
            record = (
                _record(op, "Retrying", attempts, now, now, error=error.error, retry_at=due)
                if op else None
            )
            if not await self.state.retry(item, token, due, error.message, record):
                log.warning("lease on %s lost before its retry was recorded", item.id)
            return
        record = _record(op, "Failed", attempts, now, now, error=error.error) if op else None
        output = error.body if error.body is not None else error.error  # the SDK's, as sent
        await self._end(item, token, now, "Failed", output, record, event_error=error.error)

    async def _next(
        self, item: QueueItem, token: str, now: int, *, op: dict[str, Any] | None = None,
        memo: bytes = b"", record: dict[str, Any] | None = None, due: int | None = None,
        step_id: str = "step",
    ) -> tuple[QueueItem | None, CallState | None]:
        due = now if due is None else due
        code, leased, next_state = await self.state.complete(
            item, token, now,
            step_hash=(op or {}).get("id", "") if memo else "",
            memo=memo,
            record=record,
            next_due=due,
            next_template=item.template(step_id=step_id, attempt=0),
            lease_expiry=now + self.lease_ms,
        )
        if code == 0:
            log.warning("lease on %s was lost; the call's outcome is dropped", item.id)
        return leased, next_state

    async def _ops(
        self, item: QueueItem, token: str, state: CallState, outcome: Ops, started: int,
        now: int,
    ) -> tuple[QueueItem | None, CallState | None]:
        ops = outcome.ops
        if not ops:
            await self.state.finish(item, token, now, "")
            return None, None
        if len(ops) > 1 or ops[0]["op"].lower() == "stepplanned":
            return await self._plan(item, token, ops, now)
        op = ops[0]
        kind = op["op"].lower()
        attempts = item.attempt + 1
        if kind in ("steprun", "step"):
            data = op.get("data")
            if kind == "step" and isinstance(data, dict) and set(data) in ({"data"}, {"error"}):
                memo = orjson.dumps(data)
            else:
                memo = orjson.dumps({"data": data})
            rec = _record(op, "Completed", attempts, started, now)
            return await self._next(item, token, now, op=op, memo=memo, record=rec)
        if kind == "steperror" and not outcome.no_retry and attempts < item.max_attempts:
            await self._failed_attempt(item, token, CallError(
                str((op.get("error") or {}).get("message", "step failed")),
                op.get("error") or {}, True, outcome.retry_after,
            ), now, op)
            return None, None
        if kind in ("steperror", "stepfailed"):
            failure = op.get("error") or {"name": "Error", "message": "step failed"}
            rec = _record(op, "Failed", attempts, started, now, error=failure)
            return await self._next(
                item, token, now, op=op, memo=orjson.dumps({"error": failure}), record=rec
            )
        if kind == "sleep":
            try:
                wake = _sleep_until_ms(op, now)
            except ValueError as exc:
                return await self._unsupported(item, token, now, str(exc))
            rec = _record(op, "Sleeping", attempts, started, wake, until=wake)
            return await self._next(item, token, now, op=op, memo=b"null", record=rec, due=wake)
        if kind == "discoveryrequest":
            return await self._next(item, token, now)
        if kind == "runcomplete":
            await self._end(item, token, now, "Completed", op.get("data"))
            return None, None
        if kind == "waitforevent":
            await self._wait_for_event(item, token, state, op, started, now)
            return None, None
        if kind == "invokefunction":
            await self._invoke(item, token, op, started, now)
            return None, None
        if kind == "aigateway":
            return await ai_gateway.infer(self, item, token, op, started)
        return await self._unsupported(item, token, now, f"the {op['op']} opcode")

    async def _plan(
        self, item: QueueItem, token: str, ops: list[dict[str, Any]], now: int
    ) -> tuple[None, None]:
        """Several steps at once (a parallel group): each StepPlanned (or AIGateway) becomes
        its own targeted call, each Sleep a timer, each WaitForEvent or InvokeFunction its own
        pause; the run resumes when all are done (or each, racing)."""
        odd = [op["op"] for op in ops if op["op"].lower() not in GROUP_ITEM_KINDS]
        if odd:
            await self._unsupported(item, token, now, f"{', '.join(odd)} inside a parallel group")
            return None, None
        if any(not op.get("id") for op in ops):
            await self._unsupported(item, token, now, "an opcode without an id in a group")
            return None, None
        planned: list[tuple[str, str, int, str]] = []
        for op in ops:
            if op["op"].lower() == "sleep":
                try:
                    wake = _sleep_until_ms(op, now)
                except ValueError as exc:
                    await self._unsupported(item, token, now, str(exc))
                    return None, None
                planned.append((str(op["id"]), "sleep", wake, _name(op)))
            elif GROUP_ITEM_KINDS[op["op"].lower()] == "pause":
                # started by its own queue item, stored with the group (see _start_pause)
                ref = orjson.dumps({"op": op, "started": now}).decode()
                planned.append((str(op["id"]), "pause", now, ref))
            else:
                planned.append((str(op["id"]), "call", now, _name(op)))
        race = any((op.get("opts") or {}).get("parallelMode") == "race" for op in ops)
        if await self.state.plan(item, token, now, planned, race) < 0:
            log.warning("lease on %s was lost; the planned steps are dropped", item.id)
        return None, None

    async def _unsupported(
        self, item: QueueItem, token: str, now: int, what: str
    ) -> tuple[None, None]:
        message = f"this executor does not support {what} yet"
        error = {"error": message, "name": "Error", "message": message}
        await self._end(item, token, now, "Failed", error)
        return None, None

    async def _end(self, item: QueueItem, token: str, now: int, status: str, output: Any,
                   record: dict[str, Any] | None = None, *, event_error: Any = None) -> None:
        """End the run, then emit its end events (which on_failure and invoke wait for)."""
        if await self.state.finish(item, token, now, status, output, record,
                                   event_error=event_error) == 1:
            await self.ingest.run_ended(item.run_id)

    # -- waits, invokes and timers ---------------------------------------------------------
    async def _wait_for_event(self, item: QueueItem, token: str, state: CallState,
                              op: dict[str, Any], started: int, now: int) -> None:
        opts = op.get("opts") or {}
        name = str(opts.get("event") or op.get("name") or "")
        expires = _deadline_ms(opts.get("timeout"), now)
        lookback = _duration_ms(opts.get("lookback"))
        pause = {
            "id": f"{item.run_id}:{op['id']}", "run_id": item.run_id, "fn_id": item.fn_id,
            "kind": "wait", "op": op["op"], "step": op["id"],
            "name": op.get("displayName") or op.get("name") or op["id"],
            "expr": opts.get("if") or None, "event": orjson.loads(state.run[b"event"]),
            "event_id": state.run.get(b"event_id", b"").decode(),
            "created_at": started, "expires_at": expires, "max_attempts": item.max_attempts,
        }
        pause_key = keys.pauses(name)
        record = _record(op, "Waiting", item.attempt + 1, started, expires, waiting_for=name,
                         expression=pause["expr"])
        # Events that arrived while this call was in flight (or within `lookback` before
        # it) would otherwise be missed: a queue item stored with the pause offers them to
        # it, so not even a crash right now skips that. resume.lua makes it race-free.
        scan = QueueItem(id=f"{item.run_id}:scan:{op['id']}", run_id=item.run_id,
                         fn_id=item.fn_id, kind="scan-wait",
                         ref=orjson.dumps({"key": pause_key, "id": pause["id"], "event": name,
                                           "since": started - lookback}).decode())
        await self.state.pause(item, token, now, pause_key=pause_key, pause=pause,
                               timeout_due=expires, record=record, follow_up=scan)

    async def _invoke(self, item: QueueItem, token: str, op: dict[str, Any], started: int,
                      now: int) -> None:
        opts = op.get("opts") or {}
        target = str(opts.get("function_id") or "")
        payload = opts.get("payload") or {}
        correlation = f"{item.run_id}.{op['id']}"
        expires = _deadline_ms(opts.get("timeout") or "8760h", now)
        pause = {
            "id": correlation, "run_id": item.run_id, "fn_id": item.fn_id, "kind": "invoke",
            "op": op["op"], "step": op["id"],
            "name": op.get("displayName") or op.get("name") or op["id"],
            "created_at": started, "expires_at": expires, "max_attempts": item.max_attempts,
            "target": target,
        }
        record = _record(op, "Invoking", item.attempt + 1, started, expires, function=target)
        data = dict(payload.get("data") or {})
        data["_inngest"] = {"fn_id": target, "correlation_id": correlation,
                            "source_run_id": item.run_id, "source_fn_id": item.fn_id,
                            "expire": expires}
        # the event that starts the target is sent by a queue item stored with the pause:
        # a crash between the two cannot leave the caller waiting for nothing
        emit = QueueItem(id=f"{item.run_id}:invoke:{op['id']}", run_id=item.run_id,
                         fn_id=item.fn_id, kind="emit-invoke",
                         ref=orjson.dumps({"data": data, "record": record}).decode())
        await self.state.pause(item, token, now, pause_key=keys.PAUSES_BY_CORRELATION,
                               pause=pause, timeout_due=expires, record=record,
                               follow_up=emit)

    async def _emit_invoke(self, item: QueueItem, now: int) -> None:
        """Send an invoke's event (idempotent: its id derives from the correlation id), and
        fail the invoke at once when the target is not synced or did not start."""
        spec = orjson.loads(item.ref)
        data, record = spec["data"], spec["record"]
        target, correlation = data["_inngest"]["fn_id"], data["_inngest"]["correlation_id"]
        raw: Any = await self.state.redis.hget(keys.PAUSES_BY_CORRELATION, correlation)
        if raw is None:
            return  # already resumed (or the run ended)
        pause = orjson.loads(raw)
        await self.registry.refresh()
        if target not in self.registry.functions:
            error = {"name": "Error", "message": f"function {target!r} is not synced"}
            await self.state.resume(keys.PAUSES_BY_CORRELATION, pause,
                                    orjson.dumps({"error": error}), now,
                                    {**record, "status": "Failed", "error": error})
            return
        event_id = f"invoke-{correlation}"
        await self.ingest.accept([internal_event(INVOKED, data, event_id, now)])
        # the runs the event started, this time or on an earlier try of this item
        started_runs: Any = await self.state.redis.lrange(keys.event_runs(event_id), 0, -1)
        created = [r.decode() for r in started_runs]
        statuses = await self.state.statuses(created)
        if not {"Running", "Completed", "Failed", "Cancelled"} & set(statuses):
            # the target was rate limited, a singleton skip, or a duplicate: say so now
            # instead of letting the caller wait for the invoke's timeout
            reason = (await self.read_reason(created)) or "it did not start"
            message = f"invoked function {target} did not run: {reason}"
            error = {"name": "Error", "message": message, "error": message}
            await self.state.resume(keys.PAUSES_BY_CORRELATION, pause,
                                    orjson.dumps({"error": error}), self.clock(),
                                    {**record, "status": "Failed", "error": error})

    async def read_reason(self, run_ids: list[str]) -> str | None:
        for run_id in run_ids:
            raw: Any = await self.state.redis.hget(keys.run(run_id), "waiting_reason")
            if raw:
                return str(raw.decode())
        return None

    async def _start_pause(self, item: QueueItem, token: str, now: int) -> None:
        """A wait or invoke of a parallel group begins as if it had been reported alone, at
        the time the group was reported (a wait matches the events since then)."""
        spec = orjson.loads(item.ref)
        op, started = spec["op"], int(spec["started"])
        state = await self.state.load(item.run_id)
        if state is None or state.status != "Running":
            await self.state.finish(item, token, now, "")
            return
        try:
            if op["op"].lower() == "invokefunction":
                await self._invoke(item, token, op, started, now)
            else:
                await self._wait_for_event(item, token, state, op, started, now)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            message = f"cannot act on the SDK's answer: {exc.__class__.__name__}: {exc}"
            await self._end(item, token, now, "Failed",
                            {"name": "Error", "message": message, "error": message})

    async def _timer(self, item: QueueItem, token: str, now: int) -> None:
        if item.kind == "pause":
            await self._start_pause(item, token, now)  # pause.lua releases the item
            return
        if item.kind == "emit-invoke":
            await self._emit_invoke(item, now)
            await self.state.finish(item, token, now, "")
            return
        if item.kind == "scan-wait":
            spec = orjson.loads(item.ref)
            raw: Any = await self.state.redis.hget(spec["key"], spec["id"])
            if raw is not None:  # still waiting: offer it the events it may have missed
                await self.ingest.scan_lookback(spec["key"], orjson.loads(raw), spec["event"],
                                                spec["since"])
            await self.state.finish(item, token, now, "")
            return
        if item.kind == "sleep":
            record = {"id": item.step_id, "name": item.ref or item.step_id, "op": "Sleep",
                      "status": "Completed", "attempts": 1, "started_at": now, "ended_at": now}
            await self.state.complete(
                item, token, now, step_hash=item.step_id, memo=b"null", record=record,
                next_due=now, next_template=item.template(step_id="step", attempt=0))
            return
        if item.kind == "pause-timeout":
            pause_key, _, pause_id = item.ref.rpartition("|")  # event names may hold '|'
            raw = await self.state.redis.hget(pause_key, pause_id)
            if raw is not None:
                pause = orjson.loads(raw)
                if pause["kind"] == "invoke":
                    message = "Timed out waiting for invoked function to complete"
                    memo: Any = {"error": {"name": "InngestInvokeTimeoutError",
                                           "message": message, "error": message}}
                    status = "Failed"
                else:
                    memo, status = None, "Completed"
                await self.state.resume(pause_key, pause, orjson.dumps(memo), now, {
                    "id": pause["step"], "name": pause.get("name"), "op": pause.get("op"),
                    "status": status, "attempts": 1, "started_at": pause.get("created_at"),
                    "ended_at": now, "timed_out": True})
        elif item.kind == "timeout-start":
            first = f"{item.run_id}:1"  # not started: queued, throttled or held by concurrency
            async with self.state.redis.pipeline(transaction=False) as pipe:
                pipe.hexists(keys.QUEUE_ITEMS, first)
                pipe.hexists(keys.QUEUE_LEASES, first)
                queued, leased = await pipe.execute()
            if queued and not leased:
                await self.ingest.cancel(item.run_id, f"the run did not start within "
                                         f"{int(item.ref) / 1000:g}s (timeouts.start)")
        elif item.kind == "timeout-finish":
            await self.ingest.cancel(item.run_id, f"the run did not finish within "
                                     f"{int(item.ref) / 1000:g}s (timeouts.finish)")
        await self.state.finish(item, token, now, "")
