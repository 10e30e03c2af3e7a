"""A function's agent-operations options, from its sync config (ours: official executors
ignore these keys): a spending budget, a default step timeout, and the stall threshold.

    "budget": {"usd": 2.0, "tokens": 100000}   either or both; the run fails once spent
    "stepTimeout": "30s"                       a call running longer is a failed attempt
    "stallThreshold": "5m"                     no progress for longer: the run is flagged

Steps may carry their own timeout and heartbeat timeout (`step.run(..., timeout=...,
heartbeat_timeout=...)`): the SDK reports such a step as StepPlanned with them in `opts`, so
the executor knows them before it calls (`step_limits`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from inngest_like import wire

from . import durations
from .step_record import step_name

DEFAULT_STALL_THRESHOLD_MS = 5 * 60 * 1000


class AgentOptionError(ValueError):
    """An option is wrong: `field` names it, the message says what is expected."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Budget:
    usd: float | None = None
    tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class AgentOptions:
    budget: Budget | None = None
    step_timeout_ms: int | None = None
    stall_threshold_ms: int | None = None  # None: the executor's default


def _duration(raw: dict[str, Any], field: str) -> int | None:
    value = raw.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AgentOptionError(field, "must be a duration string like 30s, 5m, 1h")
    try:
        ms = durations.parse_ms(value)
    except ValueError as exc:
        raise AgentOptionError(field, str(exc)) from None
    if ms <= 0:
        raise AgentOptionError(field, "must be longer than 0")
    return ms


def _limit(value: Any, field: str, integer: bool) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value <= 0 or (integer and value != int(value))):
        kind = "a positive integer" if integer else "a positive number"
        raise AgentOptionError(field, f"must be {kind}")
    return value


def parse(raw: dict[str, Any]) -> AgentOptions:
    """The options of one function config; raises AgentOptionError naming the field."""
    budget = None
    if raw.get("budget") is not None:
        spec = raw["budget"]
        if not isinstance(spec, dict):
            raise AgentOptionError("budget", 'must be an object like {"usd": 2.0}')
        usd = _limit(spec.get("usd"), "budget.usd", integer=False)
        tokens = _limit(spec.get("tokens"), "budget.tokens", integer=True)
        if usd is None and tokens is None:
            raise AgentOptionError("budget", "needs 'usd', 'tokens' or both")
        budget = Budget(float(usd) if usd is not None else None,
                        int(tokens) if tokens is not None else None)
    return AgentOptions(budget, _duration(raw, "stepTimeout"), _duration(raw, "stallThreshold"))


@dataclasses.dataclass(frozen=True)
class StepLimits:
    """What one step declared: ends a call that runs longer than `timeout_ms`, or that
    sends no heartbeat for `heartbeat_ms`."""

    name: str
    timeout_ms: int | None = None
    heartbeat_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "timeout_ms": self.timeout_ms,
                "heartbeat_ms": self.heartbeat_ms}

    @classmethod
    def of(cls, raw: Any) -> StepLimits | None:
        if not isinstance(raw, dict):
            return None
        timeout, heartbeat = raw.get("timeout_ms"), raw.get("heartbeat_ms")
        return cls(str(raw.get("name") or ""),
                   int(timeout) if isinstance(timeout, int) and timeout > 0 else None,
                   int(heartbeat) if isinstance(heartbeat, int) and heartbeat > 0 else None)


def _opt_ms(opts: dict[str, Any], field: str) -> int | None:
    value = opts.get(field)
    if not isinstance(value, str) or not value:
        return None
    try:
        ms = durations.parse_ms(value)
    except ValueError:
        return None  # an unreadable limit is not enforced (nor does it fail the run)
    return ms if ms > 0 else None


def step_limits(ops: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The limits StepPlanned ops declare in `opts` (`timeout`, `heartbeatTimeout`), by
    hashed step id: carried by each planned call's queue item (`QueueItem.limits`)."""
    out = {}
    for op in ops:
        opts = op.get("opts")
        # only a planned step's opts are its limits (a wait's `timeout` is something else)
        if wire.Opcode.parse(op.get("op")) is not wire.Opcode.STEP_PLANNED:
            continue
        if not isinstance(opts, dict) or not op.get("id"):
            continue
        limits = StepLimits(step_name(op), _opt_ms(opts, wire.TIMEOUT_OPT),
                            _opt_ms(opts, wire.HEARTBEAT_TIMEOUT_OPT))
        if limits.timeout_ms or limits.heartbeat_ms:
            out[str(op["id"])] = limits.to_dict()
    return out
