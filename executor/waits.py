"""Waits and invokes: parking a run on a pause, and what ends the pause besides a matching
event (`pauses.Pauses` handles those): the pause's timeout, and the follow-up items stored
with it (send an invoke's event; offer a new wait the events it may have missed).
"""

from __future__ import annotations

from typing import Any

import orjson

from . import durations, keys, pause_index, times
from .clock import Clock
from .ingest import INVOKED, Ingest, internal_event
from .pauses import mark_waited
from .queue import EmitInvoke, PauseTimeout, QueueItem, ScanWait
from .registry import Registry
from .state import CallState, RunState
from .step_record import StepRecord

MAX_WAIT_MS = 366 * 24 * 3600 * 1000  # sleeps and waits are capped at about a year
INVOKE_TIMEOUT = "8760h"


def duration_ms(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000)
    if isinstance(value, str) and value:
        try:
            return durations.parse_ms(value)
        except ValueError:
            return 0
    return 0


def deadline_ms(value: Any, now_ms: int) -> int:
    """A wait's timeout: a duration or an RFC 3339 time; empty means already expired."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return max(now_ms, min(times.parse_ms(value), now_ms + MAX_WAIT_MS))
        except ValueError:
            pass
    return now_ms + min(duration_ms(value), MAX_WAIT_MS)


def _failure(message: str, name: str = "Error") -> dict[str, Any]:
    return {"name": name, "message": message, "error": message}


class Waits:
    def __init__(self, state: RunState, registry: Registry, ingest: Ingest,
                 clock: Clock) -> None:
        self.state = state
        self.registry = registry
        self.ingest = ingest
        self.clock = clock

    async def wait_for_event(self, item: QueueItem, token: str, state: CallState,
                             op: dict[str, Any], started: int, now: int,
                             since_ms: int | None = None) -> None:
        """Park the run on a pause for the op's event. The look-back starts at `since_ms`
        (Redis time: when the call that reported the wait began), by default the time this
        call's state was read."""
        opts = op.get("opts") or {}
        name = str(opts.get("event") or op.get("name") or "")
        expires = deadline_ms(opts.get("timeout"), now)
        lookback = duration_ms(opts.get("lookback"))
        record = StepRecord.of_op(op, "Waiting", item.attempt + 1, started, expires,
                                  waiting_for=name, expression=opts.get("if") or None)
        # the trigger's values are written into the expression, and the pause goes to the
        # bucket of the equality it needs (pause_index): events read only their buckets
        address, expr, copy, path = pause_index.place(
            name, opts.get("if") or None, orjson.loads(state.run[b"event"]))
        ref = pause_index.PauseRef(f"{item.run_id}:{op['id']}", address)
        pause = {
            "id": ref.id, "run_id": item.run_id, "fn_id": item.fn_id,
            "kind": "wait", "op": op["op"], "step": op["id"], "name": record.name,
            "waiting_for": name, "expr": expr,
            "event_id": state.run.get(b"event_id", b"").decode(),
            "created_at": started, "expires_at": expires, "max_attempts": item.max_attempts,
        }
        if copy is not None:
            pause["event"] = copy  # not interpolated: evaluated against the trigger
        # Events that arrived while this call was in flight (or within `lookback` before
        # it) would otherwise be missed: a queue item stored with the pause offers them to
        # it, so not even a crash right now skips that. resume.lua makes it race-free. The
        # start is Redis time (read with the run's state), the clock events are indexed by.
        since = (since_ms or state.redis_ms or started) - lookback
        scan = QueueItem.of(ScanWait(ref.id, name, since, list(ref.address), ref.legacy_key),
                            id=f"{item.run_id}:scan:{op['id']}", run_id=item.run_id,
                            fn_id=item.fn_id)
        await mark_waited(self.state.redis, name, path)
        shard = keys.shard_of(item.run_id)
        await self.state.pause(item, token, now, ref=ref, pause=pause,
                               timeout_due=expires, record=record, follow_up=scan,
                               indexed=(keys.pause_paths(name, shard), path) if path else None)

    async def invoke(self, item: QueueItem, token: str, op: dict[str, Any], started: int,
                     now: int) -> None:
        opts = op.get("opts") or {}
        target = str(opts.get("function_id") or "")
        payload = opts.get("payload") or {}
        correlation = f"{item.run_id}.{op['id']}"
        expires = deadline_ms(opts.get("timeout") or INVOKE_TIMEOUT, now)
        record = StepRecord.of_op(op, "Invoking", item.attempt + 1, started, expires,
                                  function=target)
        pause = {
            "id": correlation, "run_id": item.run_id, "fn_id": item.fn_id, "kind": "invoke",
            "op": op["op"], "step": op["id"], "name": record.name,
            "created_at": started, "expires_at": expires, "max_attempts": item.max_attempts,
            "target": target,
        }
        data = dict(payload.get("data") or {})
        data["_inngest"] = {"fn_id": target, "correlation_id": correlation,
                            "source_run_id": item.run_id, "source_fn_id": item.fn_id,
                            "expire": expires}
        # the event that starts the target is sent by a queue item stored with the pause:
        # a crash between the two cannot leave the caller waiting for nothing
        emit = QueueItem.of(EmitInvoke(data),
                            id=f"{item.run_id}:invoke:{op['id']}", run_id=item.run_id,
                            fn_id=item.fn_id)
        await self.state.pause(item, token, now,
                               ref=pause_index.PauseRef(correlation, pause_index.INVOKE),
                               pause=pause, timeout_due=expires, record=record,
                               follow_up=emit)

    # -- follow-ups and timeouts (queue items that make no call) -----------------------
    async def emit_invoke(self, spec: EmitInvoke, now: int) -> None:
        """Send an invoke's event (idempotent: its id derives from the correlation id), and
        fail the invoke at once when the target is not synced or did not start."""
        target = spec.data["_inngest"]["fn_id"]
        correlation = spec.data["_inngest"]["correlation_id"]
        ref = pause_index.PauseRef(correlation, pause_index.INVOKE)
        async with self.state.redis.pipeline(transaction=False) as pipe:
            pipe.hget(ref.key, correlation)
            pipe.hget(keys.run(spec.data["_inngest"]["source_run_id"]), "status")
            raw, status = await pipe.execute()
        # the pause of a run that ended stays until the end's processing removes it
        # (lifecycle.py): the caller waits for nothing then, so nothing is started
        if raw is None or status != b"Running":
            return  # already resumed (or the run ended)
        pause = orjson.loads(raw)
        record = StepRecord.of_pause(pause, "Failed", now, function=target)
        await self.registry.refresh()
        if target not in self.registry.functions:
            error = _failure(f"function {target!r} is not synced")
            record.extra["error"] = error
            await self.state.resume(ref, pause, orjson.dumps({"error": error}), now, record)
            return
        event_id = f"{correlation}-invoke"  # in the caller's shard (keys.shard_of)
        await self.ingest.accept([internal_event(INVOKED, spec.data, event_id, now)])
        # the runs the event started, this time or on an earlier try of this item
        created = await self.ingest.runs_of_event(event_id)
        statuses = await self.state.statuses(created)
        if not {"Running", "Completed", "Failed", "Cancelled"} & set(statuses):
            # the target was rate limited, a singleton skip, or a duplicate: say so now
            # instead of letting the caller wait for the invoke's timeout
            reason = (await self._reason(created)) or "it did not start"
            error = _failure(f"invoked function {target} did not run: {reason}")
            record.extra["error"] = error
            record.ended_at = self.clock()
            await self.state.resume(ref, pause, orjson.dumps({"error": error}),
                                    record.ended_at, record)

    async def _reason(self, run_ids: list[str]) -> str | None:
        for run_id in run_ids:
            raw: Any = await self.state.redis.hget(keys.run(run_id), "waiting_reason")
            if raw:
                return str(raw.decode())
        return None

    async def scan(self, spec: ScanWait) -> None:
        ref = pause_index.PauseRef.of_item(spec.pause_id, spec.address, spec.pause_key)
        raw: Any = await self.state.redis.hget(ref.key, ref.id)
        if raw is not None:  # still waiting: offer it the events it may have missed
            await self.ingest.pauses.scan_lookback(ref, orjson.loads(raw), spec.event,
                                                   spec.since_ms)

    async def timed_out(self, spec: PauseTimeout, now: int) -> None:
        ref = pause_index.PauseRef.of_item(spec.pause_id, spec.address, spec.pause_key)
        raw: Any = await self.state.redis.hget(ref.key, ref.id)
        if raw is None:
            return  # resumed meanwhile
        pause = orjson.loads(raw)
        if pause["kind"] == "invoke":
            error = _failure("Timed out waiting for invoked function to complete",
                             "InngestInvokeTimeoutError")
            memo: Any = {"error": error}
            status = "Failed"
        else:
            memo, status = None, "Completed"
        await self.state.resume(ref, pause, orjson.dumps(memo), now,
                                StepRecord.of_pause(pause, status, now, timed_out=True))
