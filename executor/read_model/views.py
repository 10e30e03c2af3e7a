"""Views: stored run and event hashes turned into what the API and dashboard show."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import orjson

from .. import operations, times

RUN_STATUSES = ("Running", "Completed", "Failed", "Cancelled")
ROW_FIELDS = ("run_id", "function_id", "app_id", "event_id", "status", "started_at",
              "ended_at", "rerun_of", "seq", "waiting_reason", "queue_ms", "exec_ms",
              "stalled_since")
EVENT_HEAD_BYTES = 4096  # enough for any event name (512 chars, escaped) and a data preview


def _iso(ms: int | None) -> str | None:
    return times.rfc3339(ms) if ms else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    if value is None or value in (b"", ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


PENDING_STEP = {"Sleeping", "Waiting", "Invoking", "Retrying"}


def _step_status(rec: dict[str, Any], run_ended_ms: int | None, run_status: str) -> str:
    """A step record's status as of now: records of sleeps are not rewritten at wake-up,
    and a step still pending when its run ended (cancelled, failed) ends with the run."""
    status = str(rec.get("status", ""))
    if status == "Sleeping":
        until = int(rec.get("until") or 0)
        if run_ended_ms is not None:
            return "Completed" if until <= run_ended_ms else run_status
        return "Completed" if until <= time.time() * 1000 else status
    if status in PENDING_STEP and run_ended_ms is not None:
        return run_status
    return status


def _readable_reason(reason: str) -> str | None:
    """Scripts write times as unix ms ("throttled until 1795..."): show them as ISO 8601."""
    if not reason:
        return None
    return re.sub(r"until (\d{12,})(?:\.\d+)?", lambda m: f"until {_iso(int(m.group(1)))}",
                  reason)


def run_view(fields: dict[Any, Any]) -> dict[str, Any]:
    def get(name: str) -> str:
        return bytes(fields.get(name.encode(), b"")).decode()

    output = fields.get(b"output")
    ended = int(get("ended_at") or 0)
    return {
        "run_id": get("run_id"),
        "function_id": get("function_id"),
        "app_id": get("app_id"),
        "event_id": get("event_id"),
        "status": get("status"),
        "output": orjson.loads(output) if output else None,
        "run_started_at": _iso(int(get("started_at") or 0)),
        "ended_at": _iso(ended),
        "last_error": get("last_error") or None,
        # why a running run is not moving: flow control, set and cleared by the scripts
        "waiting_reason": _readable_reason(get("waiting_reason"))
        if get("status") == "Running" else None,
        **operations.run_view(fields),  # usage, stalled, trace_id
    }


def event_view(raw: Any) -> dict[str, Any]:
    stored = orjson.loads(raw)
    internal_id = stored.pop("internal_id", stored.get("id"))
    return {
        "id": internal_id,
        "internal_id": internal_id,
        "name": stored.get("name"),
        "data": stored.get("data"),
        "ts": stored.get("ts"),
        "received_at": _iso(stored.get("ts")),
        "event": stored,
    }


# -- the head of a stored event ------------------------------------------------------------
def event_head(head: bytes | None) -> tuple[str | None, str, bool]:
    """(name, data preview) from the first bytes of a stored event JSON. Events are stored as
    `{"name": ..., "data": {...}, ...}` (name first), so GETRANGE of a few KiB is enough to
    list events and runs without reading whole payloads (up to 512 KiB each). The last item
    says whether the preview is the whole data."""
    if not head:
        return None, "", True
    text = head.decode(errors="ignore")
    if not text.startswith('{"name":'):
        return None, "", True
    try:
        name, end = json.JSONDecoder().raw_decode(text, len('{"name":'))
    except ValueError:
        return None, "", False
    rest = text[end:]
    preview, complete = "", True
    if rest.startswith(',"data":'):
        try:
            data, _ = json.JSONDecoder().raw_decode(rest, len(',"data":'))
            preview = orjson.dumps(data).decode()
        except ValueError:  # cut by the byte limit: show what there is
            preview, complete = rest[len(',"data":'):], False
    return (name if isinstance(name, str) else None), preview, complete
