"""Function declarations: triggers and options, rendered to the sync config (protocol §3.6)."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import math
from collections.abc import Callable
from typing import Any

from ._errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TriggerEvent:
    """Start a run for each event named `event` (optionally filtered by a CEL `expression`)."""

    event: str
    expression: str | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event}
        if self.expression:
            out["expression"] = self.expression
        return out


@dataclasses.dataclass(frozen=True)
class TriggerCron:
    """Start a run on a cron schedule, e.g. `TZ=Europe/Paris 0 9 * * *`."""

    cron: str
    jitter: str | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cron": self.cron}
        if self.jitter:
            out["jitter"] = self.jitter
        return out


Trigger = TriggerEvent | TriggerCron

MAX_RETRIES = 20


def _duration(value: int | float | datetime.timedelta) -> str:
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


@dataclasses.dataclass(frozen=True)
class Cancel:
    """Cancel a run when `event` arrives (and `if_exp`, CEL over `event` = the run's trigger
    and `async` = the incoming event, holds), within `timeout` of the run's start."""

    event: str
    if_exp: str | None = None
    timeout: int | float | datetime.timedelta | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event}
        if self.if_exp:
            out["if"] = self.if_exp
        if self.timeout is not None:
            out["timeout"] = _duration(self.timeout)
        return out


Seconds = int | float | datetime.timedelta


@dataclasses.dataclass(frozen=True)
class Concurrency:
    """At most `limit` steps of this function executing at once, per value of the CEL `key`
    (`scope`: "fn" for this function, "env" shared by every function using the same key)."""

    limit: int
    key: str | None = None
    scope: str | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"limit": self.limit, "key": self.key, "scope": self.scope})


@dataclasses.dataclass(frozen=True)
class Throttle:
    """At most `limit` run starts per `period` (plus `burst`), per key; the rest wait."""

    limit: int
    period: Seconds
    burst: int | None = None
    key: str | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"limit": self.limit, "period": _duration(self.period),
                       "burst": self.burst, "key": self.key})


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most `limit` runs per `period`, per key; the rest are skipped (events kept)."""

    limit: int
    period: Seconds
    key: str | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"limit": self.limit, "period": _duration(self.period), "key": self.key})


@dataclasses.dataclass(frozen=True)
class Debounce:
    """Start `period` after the last event of a key (with that event); `timeout` caps it."""

    period: Seconds
    key: str | None = None
    timeout: Seconds | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"period": _duration(self.period), "key": self.key,
                       "timeout": None if self.timeout is None else _duration(self.timeout)})


@dataclasses.dataclass(frozen=True)
class Batch:
    """Up to `max_size` events per key, or what arrived within `timeout`, in one run
    (`ctx.events`); events failing `if_exp` run alone at once."""

    max_size: int
    timeout: Seconds
    key: str | None = None
    if_exp: str | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"maxSize": self.max_size, "timeout": _duration(self.timeout),
                       "key": self.key, "if": self.if_exp})


@dataclasses.dataclass(frozen=True)
class Priority:
    """`run`: CEL giving seconds of head start in the function's queue (-600..600)."""

    run: str

    def to_config(self) -> dict[str, Any]:
        return {"run": self.run}


@dataclasses.dataclass(frozen=True)
class Singleton:
    """One active run per key: `skip` drops newcomers, `cancel` replaces the active run."""

    mode: str
    key: str | None = None

    def to_config(self) -> dict[str, Any]:
        return _strip({"mode": self.mode, "key": self.key})


def _strip(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    concurrency: list[Concurrency] | None = None
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch_events: Batch | None = None
    priority: Priority | None = None
    singleton: Singleton | None = None
    idempotency: str | None = None
    idempotency_period: Seconds | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.concurrency:
            out["concurrency"] = [c.to_config() for c in self.concurrency]
        for name, option in (("throttle", self.throttle), ("rateLimit", self.rate_limit),
                             ("debounce", self.debounce), ("batchEvents", self.batch_events),
                             ("priority", self.priority), ("singleton", self.singleton)):
            if option is not None:
                out[name] = option.to_config()
        if self.idempotency:
            out["idempotency"] = self.idempotency
        if self.idempotency_period is not None:
            out["idempotencyPeriod"] = _duration(self.idempotency_period)  # ours
        return out


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Cancel a run that has not started within `start` of being queued, or has not finished
    within `finish` of starting."""

    start: int | float | datetime.timedelta | None = None
    finish: int | float | datetime.timedelta | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.start is not None:
            out["start"] = _duration(self.start)
        if self.finish is not None:
            out["finish"] = _duration(self.finish)
        return out


@dataclasses.dataclass(frozen=True)
class Budget:
    """Stop a run once it spent `usd` dollars or `tokens` tokens, as its step bodies reported
    them with `inngest_like.usage(...)`: no further step runs or retries, and the run fails
    with a BudgetExceededError naming the spend and the limit (`on_failure` runs)."""

    usd: float | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.usd is None and self.tokens is None:
            raise ConfigError("Budget: give usd=, tokens= or both")
        if self.usd is not None and (isinstance(self.usd, bool) or not isinstance(
                self.usd, int | float) or not math.isfinite(self.usd) or self.usd <= 0):
            raise ConfigError(f"Budget: usd must be a positive number, got {self.usd!r}")
        if self.tokens is not None and (isinstance(self.tokens, bool) or not isinstance(
                self.tokens, int) or self.tokens <= 0):
            raise ConfigError(f"Budget: tokens must be a positive integer, got {self.tokens!r}")

    def to_config(self) -> dict[str, Any]:
        return _strip({"usd": self.usd, "tokens": self.tokens})


@dataclasses.dataclass(frozen=True)
class AgentOptions:
    """Operating long agent runs (ours; official executors ignore these keys): a spending
    `budget`, a default `step_timeout` for every call of the function, and the
    `stall_threshold` after which a run without progress is flagged stalled."""

    budget: Budget | None = None
    step_timeout: Seconds | None = None
    stall_threshold: Seconds | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.budget is not None:
            out["budget"] = self.budget.to_config()
        if self.step_timeout is not None:
            out["stepTimeout"] = _duration(self.step_timeout)
        if self.stall_threshold is not None:
            out["stallThreshold"] = _duration(self.stall_threshold)
        return out


class Function:
    """A user function plus its config. Created by `Inngest.create_function`."""

    def __init__(
        self,
        *,
        app_id: str,
        fn_id: str,
        name: str | None,
        triggers: list[Trigger],
        retries: int | None,
        handler: Callable[..., Any],
        cancel: list[Cancel] | None = None,
        timeouts: Timeouts | None = None,
        on_failure: Callable[..., Any] | None = None,
        flow: FlowOptions | None = None,
        agent: AgentOptions | None = None,
    ) -> None:
        if not fn_id or not isinstance(fn_id, str):
            raise ConfigError("create_function: fn_id must be a non-empty string")
        if not triggers:
            raise ConfigError(f"function {fn_id!r}: at least one trigger is required")
        if retries is not None and not (0 <= retries <= MAX_RETRIES):
            raise ConfigError(
                f"function {fn_id!r}: retries must be between 0 and {MAX_RETRIES}, got {retries}"
            )
        self.local_id = fn_id
        self.id = f"{app_id}-{fn_id}"
        self.name = name or fn_id
        self.triggers = triggers
        self.retries = retries
        self.handler = handler
        self.cancel = list(cancel or [])
        self.timeouts = timeouts
        self.flow = flow or FlowOptions()
        self.agent = agent or AgentOptions()
        for what, value in (("step_timeout", self.agent.step_timeout),
                            ("stall_threshold", self.agent.stall_threshold)):
            seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else value
            if seconds is not None and not seconds > 0:
                raise ConfigError(f"function {fn_id!r}: {what} must be positive, got {value!r}")
        self.on_failure: Function | None = None
        if on_failure is not None:
            # Inngest's shape: a separate function triggered by its parent's failure.
            self.on_failure = Function(
                app_id=app_id,
                fn_id=f"{fn_id}-failure",
                name=f"{self.name} (failure)",
                triggers=[TriggerEvent(
                    event="inngest/function.failed",
                    expression=f"event.data.function_id == '{self.id}'",
                )],
                retries=0,
                handler=on_failure,
            )
        self.is_async = inspect.iscoroutinefunction(handler)
        params = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        # (ctx, step) as in the seeds, or (ctx) alone with ctx.step as in the official SDK 0.5.
        self.takes_step = len(params) >= 2

    def to_config(self, serve_url: str) -> dict[str, Any]:
        sep = "&" if "?" in serve_url else "?"
        step: dict[str, Any] = {
            "id": "step",
            "name": "step",
            "runtime": {"type": "http", "url": f"{serve_url}{sep}fnId={self.id}&stepId=step"},
        }
        if self.retries is not None:
            step["retries"] = {"attempts": self.retries}
        config: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "triggers": [t.to_config() for t in self.triggers],
            "steps": {"step": step},
        }
        if self.cancel:
            config["cancel"] = [c.to_config() for c in self.cancel]
        if self.timeouts is not None:
            config["timeouts"] = self.timeouts.to_config()
        config.update(self.flow.to_config())
        config.update(self.agent.to_config())
        return config
