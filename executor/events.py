"""Events in: validate a request's events and give each one an id.

Validation is complete before anything is written. A request that is wrong as a whole
(malformed JSON, not an event or a list, no events, too many) stores nothing. In a batch,
events are taken in order up to the first invalid one: the valid events before it are
accepted and the rest is not, as Inngest's event API does (the official SDKs report the ids
of the accepted events beside the error, e.g. Python's `SendEventsError.ids`).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson
from ulid import ULID

from . import bodies

# the event every run's end may emit (lifecycle.py): invokes and waits listen for it
FINISHED = "inngest/function.finished"

RESERVED_PREFIX = "inngest/"
MAX_NAME_CHARS = 512
TS_MIN_MS = 315_532_800_000  # 1980-01-01
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01


class EventError(ValueError):
    """A request's event is wrong; the message names the field and the problem."""


# Inngest's own ceiling per event, what its dev server admits (the official Python suite
# sends ~1 MiB events in dev); production keeps Inngest Cloud's default.
DEV_MAX_EVENT_BYTES = 3 * 1024 * 1024
PRODUCTION_MAX_EVENT_BYTES = 512 * 1024


@dataclasses.dataclass
class Limits:
    max_event_bytes: int = DEV_MAX_EVENT_BYTES
    max_events: int = 5000

    @classmethod
    def for_mode(cls, production: bool, max_event_bytes: int | None = None) -> Limits:
        """The limits of dev or production mode, unless `max_event_bytes` is given."""
        default = PRODUCTION_MAX_EVENT_BYTES if production else DEV_MAX_EVENT_BYTES
        return cls(max_event_bytes=max_event_bytes or default)


@dataclasses.dataclass
class IncomingEvent:
    internal_id: str
    wire: dict[str, Any]  # what SDKs receive as `event`
    user_id: str  # the sender's `id`: its repeats within 24 h are not stored; "" when absent


def _check(raw: Any, where: str, limits: Limits, now_ms: int) -> dict[str, Any]:
    whole = where.rstrip(".") or "event"  # how to name the event itself in a message
    if not isinstance(raw, dict):
        raise EventError(f"{whole}: must be a JSON object")
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
            f"{whole}: event is {size} bytes, over the limit of {limits.max_event_bytes}"
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
    accepted, problem = parse_batch(body, limits, now_ms, seed)
    if problem is not None:
        raise problem
    return accepted


def parse_batch(
    body: bytes, limits: Limits, now_ms: int, seed: str | None = None
) -> tuple[list[IncomingEvent], EventError | None]:
    """The events of one `POST /e/{key}` body up to the first invalid one, and that one's
    error (None when all are valid). Raises EventError when the body is wrong as a whole."""
    try:
        parsed = bodies.loads(body)
    except bodies.BodyError as exc:
        raise EventError(str(exc)) from None
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
    checked: list[dict[str, Any]] = []
    problem: EventError | None = None
    for i, raw in enumerate(batch):
        try:
            checked.append(_check(raw, "" if single else f"events[{i}].", limits, now_ms))
        except EventError as exc:
            problem = exc
            break
    # seeded ids depend on the position only: the accepted events get the ids that a fully
    # valid retry of the same request would give them
    ids = _seeded_ids(seed, len(checked)) or [str(ULID()) for _ in checked]
    out = []
    for internal_id, event in zip(ids, checked, strict=True):
        user_id = event["id"]
        event["id"] = user_id or internal_id
        out.append(IncomingEvent(internal_id, event, user_id))
    return out, problem
