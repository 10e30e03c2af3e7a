"""Events in: validate a request, give each event an id, store it and start its runs.

Validation is complete before anything is written, so a bad request stores nothing; the
write is one script, so an accepted event and the runs it starts exist together or not at all.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import keys
from .queue import QUEUE_KEYS
from .registry import FunctionConfig
from .scripts import Scripts

RESERVED_PREFIX = "inngest/"
MAX_NAME_CHARS = 512
TS_MIN_MS = 315_532_800_000  # 1980-01-01
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01
IDEMPOTENCY_TTL_S = 24 * 3600


class EventError(ValueError):
    """A request's event is wrong; the message names the field and the problem."""


@dataclasses.dataclass
class Limits:
    max_event_bytes: int = 512 * 1024
    max_events: int = 5000


@dataclasses.dataclass
class IncomingEvent:
    internal_id: str
    wire: dict[str, Any]  # what SDKs receive as `event`
    user_id: str  # the sender's `id`, the run idempotency key; "" when absent


def _check(raw: Any, where: str, limits: Limits, now_ms: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EventError(f"{where}: must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise EventError(f"{where}name: required, must be a non-empty string")
    if len(name) > MAX_NAME_CHARS:
        raise EventError(f"{where}name: longer than {MAX_NAME_CHARS} characters")
    if name.startswith(RESERVED_PREFIX):
        raise EventError(f"{where}name: names starting with {RESERVED_PREFIX!r} are reserved")
    data = raw.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EventError(f"{where}data: must be a JSON object")
    event_id = raw.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise EventError(f"{where}id: must be a string")
    ts = raw.get("ts")
    if ts is None or ts == 0:
        ts = now_ms
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise EventError(f"{where}ts: must be an integer (unix milliseconds)")
    if not TS_MIN_MS <= ts <= TS_MAX_MS:
        raise EventError(f"{where}ts: must be unix milliseconds between 1980 and 2100")
    user = raw.get("user")
    if user is None:
        user = {}
    if not isinstance(user, dict):
        raise EventError(f"{where}user: must be a JSON object")
    version = raw.get("v")
    if version is not None and not isinstance(version, str):
        raise EventError(f"{where}v: must be a string")
    event = {"name": name, "data": data, "id": event_id or "", "ts": ts, "user": user}
    if version is not None:
        event["v"] = version
    size = len(orjson.dumps(event))
    if size > limits.max_event_bytes:
        raise EventError(
            f"{where}: event is {size} bytes, over the limit of {limits.max_event_bytes}"
        )
    return event


def _seeded_ids(seed: str | None, count: int) -> list[str] | None:
    """Ids derived from `X-Inngest-Event-Id-Seed`, so a retried send yields the same ids."""
    if not seed:
        return None
    try:
        ms_text, entropy_b64 = seed.split(",", 1)
        entropy = base64.b64decode(entropy_b64, validate=True)
        ms = int(ms_text)
    except ValueError:
        return None
    if len(entropy) != 10 or not 0 <= ms < 2**48:
        return None
    ids = []
    for index in range(1, count + 1):
        tail = (int.from_bytes(entropy[6:], "big") + index) % 2**32
        raw = ms.to_bytes(6, "big") + entropy[:6] + tail.to_bytes(4, "big")
        ids.append(str(ULID.from_bytes(raw)))
    return ids


def parse_request(
    body: bytes, limits: Limits, now_ms: int, seed: str | None = None
) -> list[IncomingEvent]:
    """Every event of one `POST /e/{key}` body, or EventError for the first problem."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"body: malformed JSON: {exc}") from None
    single = isinstance(parsed, dict)
    batch = [parsed] if single else parsed
    if not isinstance(batch, list):
        raise EventError("body: must be an event object or an array of events")
    if not batch:
        raise EventError("body: no events")
    if len(batch) > limits.max_events:
        raise EventError(
            f"body: {len(batch)} events, over the limit of {limits.max_events} per request"
        )
    checked = [
        _check(raw, "" if single else f"events[{i}].", limits, now_ms)
        for i, raw in enumerate(batch)
    ]
    ids = _seeded_ids(seed, len(checked)) or [str(ULID()) for _ in checked]
    out = []
    for internal_id, event in zip(ids, checked, strict=True):
        user_id = event["id"]
        event["id"] = user_id or internal_id
        out.append(IncomingEvent(internal_id, event, user_id))
    return out


def new_run(
    fn: FunctionConfig, events: list[IncomingEvent], now_ms: int, idempotency_key: str = ""
) -> dict[str, Any]:
    """The ingest-script record that starts one run of `fn` for `events`."""
    run_id = str(ULID())
    first = events[0]
    fields = {
        "run_id": run_id,
        "function_id": fn.id,
        "app_id": fn.app_id,
        "event_id": first.internal_id,
        "event": orjson.dumps(first.wire).decode(),
        "events": orjson.dumps([e.wire for e in events]).decode(),
        "status": "Running",
        "started_at": str(now_ms),
        "version": "-1",
    }
    return {
        "run_key": keys.run(run_id),
        "runs_key": keys.event_runs(first.internal_id),
        "idem_key": keys.idempotency(fn.id, idempotency_key) if idempotency_key else "",
        "idem_ttl": IDEMPOTENCY_TTL_S,
        "run_id": run_id,
        "fields": fields,
        "item": {
            "run_id": run_id,
            "fn_id": fn.id,
            "step_id": "step",
            "attempt": 0,
            "max_attempts": fn.max_attempts,
        },
        "due": now_ms,
    }


async def ingest(
    redis: Redis,
    scripts: Scripts,
    events: list[IncomingEvent],
    runs: list[dict[str, Any]],
    now_ms: int,
) -> list[str]:
    """Store events and start runs atomically; returns the ids of runs actually created."""
    payload = {
        "now": now_ms,
        "events": [
            {
                "key": keys.event(e.internal_id),
                "name_key": keys.events_by_name(e.wire["name"]),
                "id": e.internal_id,
                "ts": now_ms,
                "json": orjson.dumps({**e.wire, "internal_id": e.internal_id}).decode(),
            }
            for e in events
        ],
        "runs": runs,
    }
    created = await scripts(
        "ingest",
        [keys.EVENTS, keys.RUNS, QUEUE_KEYS[0], QUEUE_KEYS[1], keys.QUEUE_WAKE],
        [orjson.dumps(payload)],
    )
    return [c.decode() if isinstance(c, bytes) else str(c) for c in created]


def runs_for(
    events: list[IncomingEvent], functions_for: Any, now_ms: int
) -> list[dict[str, Any]]:
    """One run per (event, subscribed function); the sender's event id deduplicates."""
    runs = []
    for event in events:
        for fn in functions_for(event.wire["name"]):
            runs.append(new_run(fn, [event], now_ms, event.user_id))
    return runs
