"""Why a running run is where it is, for a list row: Queued, Running (a call in flight),
Sleeping until T, Waiting for E, Invoking F, Retrying (2/5) at T, Stalled.

Read from what the engine already keeps: the run's latest queue item (`<run>:<seq>`: its due
time in the ready queue, its lease, its attempt) and, when that item is gone because the
run is parked on a pause, the pause itself (its event or invoked function, its deadline).
Two pipelined round trips for the running rows of a page, whatever their number.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from .. import keys
from ..pause_index import PauseRef
from .views import _readable_reason, _text


def phase(kind: str, label: str, detail: str = "", at_ms: int | None = None) -> dict[str, Any]:
    return {"kind": kind, "label": label, "detail": detail, "at_ms": at_ms}


async def add_phases(redis: Redis, rows: list[dict[str, Any]], now_ms: int) -> None:
    """Set `phase` (and `elapsed_ms`) on each running row."""
    running = [r for r in rows if r.get("status") == "Running"]
    if not running:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for row in running:
            item_id = f"{row['run_id']}:{row.get('seq') or 1}"
            queue = keys.queue_of(row["run_id"])
            pipe.hget(queue.items, item_id)
            pipe.zscore(queue.ready, item_id)
            pipe.zscore(queue.leased, item_id)
            pipe.smembers(keys.run_listeners(row["run_id"]))
        values = await pipe.execute()
    parked: list[tuple[dict[str, Any], PauseRef]] = []
    for i, row in enumerate(running):
        raw, due, lease, listeners = values[4 * i: 4 * i + 4]
        row["elapsed_ms"] = max(0, now_ms - (row.get("started_ms") or now_ms))
        row["phase"] = _of_item(row, raw, due, lease, now_ms)
        if row["phase"] is None:
            for entry in sorted(_text(e) for e in listeners):
                ref = PauseRef.of_member(entry)
                if ":cancel:" not in ref.id:
                    parked.append((row, ref))
                    break
            else:
                row["phase"] = phase("Running", "Running")
        if row.get("stalled"):
            row["phase"] = phase("Stalled", "Stalled", "no progress detected")
    if parked:
        async with redis.pipeline(transaction=False) as pipe:
            for _, ref in parked:
                pipe.hget(ref.key, ref.id)
            pauses = await pipe.execute()
        for (row, ref), raw in zip(parked, pauses, strict=True):
            if row["phase"] is None:
                row["phase"] = _of_pause(raw, ref)


def _of_item(row: dict[str, Any], raw: Any, due: Any, lease: Any,
             now_ms: int) -> dict[str, Any] | None:
    if raw is None:
        return None  # parked on a pause (or between two items): see the pause
    item = orjson.loads(raw)
    if lease is not None:
        return phase("Running", "Running", "a call to the app is in flight")
    attempt = int(item.get("attempt") or 0)
    if due is None:  # a concurrency limit holds it back
        return phase("Queued", "Queued", _readable_reason(row.get("waiting_reason") or "")
                     or "held by flow control")
    due_ms = int(due)
    if attempt > 0 and item.get("kind", "call") == "call":
        label = f"Retrying ({attempt + 1}/{item.get('max_attempts') or attempt + 1})"
        return phase("Retrying", label, "", due_ms)
    if due_ms > now_ms:
        if str(item.get("id", "")).endswith(":1"):
            return phase("Queued", "Queued", _readable_reason(row.get("waiting_reason") or "")
                         or "starts", due_ms)
        return phase("Sleeping", "Sleeping", "until", due_ms)
    return phase("Queued", "Queued", "waiting for a worker", due_ms)


def _of_pause(raw: Any, ref: PauseRef) -> dict[str, Any]:
    if raw is None:
        return phase("Running", "Running")
    pause = orjson.loads(raw)
    until = pause.get("expires_at")
    if pause.get("kind") == "invoke":
        return phase("Invoking", "Invoking", str(pause.get("target") or ""), until)
    named = ref.event_name or ""
    for shard in keys.shards():  # a pause hash's key ends with its event's name
        prefix = keys.pauses("", shard)
        if ref.legacy_key.startswith(prefix):
            named = ref.legacy_key[len(prefix):]
    event = pause.get("waiting_for") or named or str(pause.get("name") or "")
    return phase("Waiting", "Waiting", event, until)
