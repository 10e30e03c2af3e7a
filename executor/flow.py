"""Flow control: the function options that decide when, and whether, runs start and steps
execute (protocol §3.6, §10). Parsed and validated at sync; evaluated per event here (CEL
keys); enforced atomically in Lua (ingest.lua for starts, lease.lua for concurrency), so the
limits hold across any number of executor processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

from . import durations, expressions, keys

MAX_CONCURRENCY_ENTRIES = 2
MAX_BATCH = 100
DEFAULT_IDEMPOTENCY_MS = 24 * 3600 * 1000
MAX_PRIORITY_S = 600


class FlowError(ValueError):
    """A flow-control option is wrong; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Concurrency:
    limit: int
    key: str | None
    scope: str


@dataclasses.dataclass(frozen=True)
class Window:
    """Throttle and rate limit: `limit` per `period_ms` (per `key`), throttle with `burst`."""

    limit: int
    period_ms: int
    key: str | None
    burst: int = 0


@dataclasses.dataclass(frozen=True)
class Debounce:
    period_ms: int
    key: str | None
    timeout_ms: int | None


@dataclasses.dataclass(frozen=True)
class Batch:
    max_size: int
    timeout_ms: int
    key: str | None
    condition: str | None


@dataclasses.dataclass(frozen=True)
class Singleton:
    mode: str
    key: str | None


@dataclasses.dataclass(frozen=True)
class FlowControl:
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Window | None = None
    rate_limit: Window | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    priority: str | None = None
    singleton: Singleton | None = None
    idempotency: str | None = None
    idempotency_ms: int = DEFAULT_IDEMPOTENCY_MS

    @property
    def empty(self) -> bool:
        return self == FlowControl()


def _int(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FlowError(f"{field}: must be an integer >= {minimum}")
    return value


def _period(value: Any, field: str, *, required: bool = True) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{value}s"
    if not isinstance(value, str) or not value:
        raise FlowError(f"{field}: must be a duration like 30s, 5m, 1h")
    try:
        ms = durations.parse_ms(value)
    except ValueError as exc:
        raise FlowError(f"{field}: {exc}") from None
    if ms <= 0:
        raise FlowError(f"{field}: must be longer than 0")
    return ms


def _expr(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise FlowError(f"{field}: must be a CEL expression string")
    try:
        expressions.validate(value)
    except expressions.ExpressionError as exc:
        raise FlowError(f"{field}: invalid CEL expression: {exc}") from None
    return value


def _object(raw: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise FlowError(f"{name}: must be an object")
    return value


def parse(raw: dict[str, Any]) -> FlowControl:
    """Every flow-control option of a function config; FlowError names the bad field."""
    concurrency: list[Concurrency] = []
    entries = raw.get("concurrency")
    if isinstance(entries, int) and not isinstance(entries, bool):
        entries = [{"limit": entries}]  # a bare integer (JS)
    if entries is not None:
        if not isinstance(entries, list):
            raise FlowError("concurrency: must be a list (or an integer)")
        if len(entries) > MAX_CONCURRENCY_ENTRIES:
            raise FlowError(f"concurrency: at most {MAX_CONCURRENCY_ENTRIES} entries")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise FlowError(f"concurrency[{i}]: must be an object")
            scope = entry.get("scope") or "fn"
            if scope not in ("fn", "env", "account"):
                raise FlowError(f"concurrency[{i}].scope: must be fn, env or account")
            if scope != "fn" and not entry.get("key"):
                raise FlowError(f"concurrency[{i}].key: required with scope {scope}")
            concurrency.append(Concurrency(_int(entry.get("limit"), f"concurrency[{i}].limit"),
                                           _expr(entry.get("key"), f"concurrency[{i}].key"),
                                           scope))
    throttle = rate_limit = None
    if (t := _object(raw, "throttle")) is not None:
        throttle = Window(_int(t.get("limit"), "throttle.limit"),
                          _period(t.get("period"), "throttle.period") or 0,
                          _expr(t.get("key"), "throttle.key"),
                          _int(t.get("burst", 0) or 0, "throttle.burst", 0))
    if (r := _object(raw, "rateLimit")) is not None:
        rate_limit = Window(_int(r.get("limit"), "rateLimit.limit"),
                            _period(r.get("period"), "rateLimit.period") or 0,
                            _expr(r.get("key"), "rateLimit.key"))
    debounce = None
    if (d := _object(raw, "debounce")) is not None:
        debounce = Debounce(_period(d.get("period"), "debounce.period") or 0,
                            _expr(d.get("key"), "debounce.key"),
                            _period(d.get("timeout"), "debounce.timeout", required=False))
    batch = None
    if (b := _object(raw, "batchEvents")) is not None:
        size = _int(b.get("maxSize"), "batchEvents.maxSize")
        if size > MAX_BATCH:
            raise FlowError(f"batchEvents.maxSize: at most {MAX_BATCH}")
        batch = Batch(size, _period(b.get("timeout"), "batchEvents.timeout") or 0,
                      _expr(b.get("key"), "batchEvents.key"), _expr(b.get("if"), "batchEvents.if"))
    priority = None
    if (p := _object(raw, "priority")) is not None:
        priority = _expr(p.get("run"), "priority.run")
    singleton = None
    if (s := _object(raw, "singleton")) is not None:
        mode = s.get("mode")
        if mode not in ("skip", "cancel"):
            raise FlowError("singleton.mode: must be skip or cancel")
        singleton = Singleton(mode, _expr(s.get("key"), "singleton.key"))
    idempotency = _expr(raw.get("idempotency"), "idempotency")
    window = _period(raw.get("idempotencyPeriod"), "idempotencyPeriod", required=False)
    return FlowControl(tuple(concurrency), throttle, rate_limit, debounce, batch, priority,
                       singleton, idempotency, window or DEFAULT_IDEMPOTENCY_MS)


class KeyExpressionError(ValueError):
    """A key expression failed on an event: the run is skipped with this reason (never
    given a shared "None" key, which would merge unrelated events)."""


def evaluate_key(expression: str | None, event: dict[str, Any], option: str = "key") -> str:
    """The value a key expression gives for this event, as a short stable string; KeyExpressionError
    naming the option when the expression fails on this event or gives null."""
    if not expression:
        return "_"
    try:
        value = expressions.value_of(expression, {"event": event})
    except expressions.EvaluationError as exc:
        raise KeyExpressionError(f"{option} `{expression}` failed on this event: {exc}") from None
    text = str(value) if not isinstance(value, bool) else str(value).lower()
    # hash long keys: they become parts of Redis keys
    return text if len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()


def home_shard(fn_id: str, flow: FlowControl) -> int | None:
    """The shard every run of a function with shared flow-control state lives in (the state
    its runs share sits there too, so starting and leasing stay one script each); None when
    its runs may spread over every shard. Concurrency shared with other functions (scope
    env or account) puts them all in shard 0. Priority orders the runs of one queue, so a
    function with a priority keeps its runs in one shard's too."""
    if any(entry.scope != "fn" for entry in flow.concurrency):
        return 0
    shared = (flow.concurrency, flow.throttle, flow.rate_limit, flow.debounce, flow.batch,
              flow.singleton, flow.idempotency, flow.priority)
    return keys.shard_by_hash(fn_id) if any(shared) else None


def concurrency_slots(fn_id: str, flow: FlowControl, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The concurrency slots each of a run's calls takes: [{n: slot name, limit, label}].
    Names, not keys: the scripts that take and free a slot get its keys from their caller
    (`keys.slot_keys`, in the shard of the run: its home shard)."""
    slots = []
    for entry in flow.concurrency:
        value = evaluate_key(entry.key, event, "concurrency key")
        scope_id = fn_id if entry.scope == "fn" else entry.scope
        label = f"concurrency limit {entry.limit}" + (f" on key {value}" if entry.key else "")
        slots.append({"n": keys.concurrency_slot(scope_id, entry.key or "", value),
                      "limit": entry.limit, "label": label})
    return slots


def priority_s(flow: FlowControl, event: dict[str, Any]) -> int:
    if not flow.priority:
        return 0
    value = expressions.evaluate(flow.priority, {"event": event})
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        return 0  # inf and NaN have no integer value: no head start
    return max(-MAX_PRIORITY_S, min(MAX_PRIORITY_S, int(value)))
