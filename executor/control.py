"""Acting on runs that exist: rerun (optionally from a step) and bulk cancellation.

Both go through the same paths as everything else: a rerun is a new run started by
`Ingest.accept`, a cancellation is `Ingest.cancel`; the API and the dashboard call these.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson
from ulid import ULID

from . import expressions, keys, shards, times
from .events import IncomingEvent

if TYPE_CHECKING:
    from .service import Executor


class RerunError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def rerun(executor: Executor, run_id: str, from_step: str | None = None,
                reason: str = "") -> str:
    """Start a new run of the same function from the same events. With `from_step` (a hashed
    step id or a step name), the memos saved before that step are reused, not re-run. The
    old run lists its reruns (`keys.run_reruns`), the new one names the old (`rerun_of`)
    and keeps `reason`."""
    redis = executor.redis
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.run(run_id))
        pipe.lrange(keys.run_stack(run_id), 0, -1)
        pipe.hgetall(keys.run_memos(run_id))
        pipe.hgetall(keys.run_steps(run_id))
        fields, stack, memos, records = await pipe.execute()
    if not fields:
        raise RerunError(404, f"run {run_id} not found")
    await executor.registry.refresh()
    fn = executor.registry.functions.get(fields[b"function_id"].decode())
    if fn is None:
        raise RerunError(409, f"function {fields[b'function_id'].decode()} is no longer synced")
    reused: list[tuple[str, bytes, bytes | None]] = []
    if from_step:
        names = {h: orjson.loads(r).get("name") for h, r in records.items()}
        order = [h.decode() for h in stack]
        position = next((i for i, h in enumerate(order)
                         if from_step in (h, names.get(h.encode()))), None)
        if position is None:
            raise RerunError(400, f"from_step: run {run_id} has no completed step {from_step!r}")
        for hashed in order[:position]:
            record = records.get(hashed.encode())
            if record:
                rec = orjson.loads(record)
                rec["status"] = "Reused"
                rec["reused_from"] = run_id
                record = orjson.dumps(rec)
            reused.append((hashed, memos[hashed.encode()], record))
    events = [IncomingEvent(e.get("internal_id") or e.get("id", ""), e, "")
              for e in orjson.loads(fields[b"events"])]
    for event, original in zip(events, orjson.loads(fields[b"events"]), strict=True):
        event.internal_id = fields[b"event_id"].decode() if event is events[0] else str(ULID())
        event.wire = original
    run = executor.ingest.new_run(fn, events, executor.clock(), memos=reused, rerun=True)
    run["fields"]["rerun_of"] = run_id
    if reason:
        run["fields"]["rerun_reason"] = reason
    created = await executor.ingest.accept([], runs=[run])
    if not created:  # cannot happen with fresh run ids; answer it rather than crash
        raise RerunError(409, f"run {run_id}: the rerun was not started")
    await redis.rpush(keys.run_reruns(run_id), created[0])  # type: ignore[misc]
    return created[0]


@dataclasses.dataclass
class Cancellation:
    function_id: str
    started_after_ms: int
    started_before_ms: int
    expression: str | None


def _time_ms(body: dict[str, Any], field: str, default: int) -> int:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return times.parse_ms(value)
        except ValueError:
            raise ValueError(f"{field}: must be RFC 3339 time or unix ms") from None
    raise ValueError(f"{field}: must be RFC 3339 time or unix ms")


def parse_cancellation(body: Any) -> Cancellation:
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")
    fn_id = body.get("function_id")
    if not isinstance(fn_id, str) or not fn_id:
        raise ValueError("function_id: required, must be a non-empty string")
    expression = body.get("if")
    if expression is not None:
        if not isinstance(expression, str):
            raise ValueError("if: must be a string (a CEL expression over `event`)")
        try:
            expressions.validate(expression)
        except expressions.ExpressionError as exc:
            raise ValueError(f"if: invalid CEL expression: {exc}") from None
    return Cancellation(fn_id, _time_ms(body, "started_after", 0),
                        _time_ms(body, "started_before", 2**62), expression or None)


async def cancel_many(executor: Executor, spec: Cancellation) -> dict[str, Any]:
    """Cancel the running runs of a function started in a time window (and matching `if`)."""
    # every shard's runs started in the window, oldest first
    answers = await shards.each_shard(executor.redis, lambda pipe, shard: pipe.zrangebyscore(
        keys.runs(shard), spec.started_after_ms, spec.started_before_ms, withscores=True))
    run_ids = [run_id for run_id, _ in shards.oldest_first(shards.entries(a) for a in answers)]
    cancelled = []
    for start in range(0, len(run_ids), 500):
        batch = run_ids[start:start + 500]
        async with executor.redis.pipeline(transaction=False) as pipe:
            for run_id in batch:
                pipe.hmget(keys.run(run_id), ["function_id", "status", "event"])
            rows = await pipe.execute()
        for run_id, (fn_id, status, event) in zip(batch, rows, strict=True):
            if fn_id is None or fn_id.decode() != spec.function_id or status != b"Running":
                continue
            if spec.expression and not expressions.matches(
                    spec.expression, {"event": orjson.loads(event)}):
                continue
            if await executor.ingest.cancel(run_id, "cancelled by a bulk cancellation"):
                cancelled.append(run_id)
    return {"id": str(ULID()), "function_id": spec.function_id, "count": len(cancelled),
            "run_ids": cancelled}
