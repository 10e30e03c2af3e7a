"""Cost meters and budgets: what step bodies spend (tokens, dollars) and the limit on it.

A step body reports usage (`inngest_like.usage(model=..., input_tokens=..., ...)`); the SDK
sends what one call's step body reported so far as a report, with the step's opcode and
with heartbeats (extra fields official executors ignore):

    "usage": {"calls": 3, "models": {"gpt-4o": {"input_tokens": 900, "output_tokens": 120,
                                                 "cost_usd": 0.0042}}}

`calls` counts usage() calls, so the reports of one call only grow: `usage.lua` keeps the
largest per call and adds the difference to the step's, the run's and the function's
totals, whatever order and however often the reports arrive. A failed attempt's report
counts like any other (providers bill failed calls).

The budget (`budget: {usd, tokens}` of the function) is enforced by the engine, not the call
sites: the worker checks the run's spend (kept in the run hash by `usage.lua`, read with the
run's state) before every call, and `retry_gate` before every retry, so once the spend
reaches the budget no step runs or retries again and the run fails with a
BudgetExceededError naming the spend and the limit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
from redis.asyncio import Redis

from inngest_like import wire

from . import keys
from .agent_options import Budget
from .driver import Ops, Outcome
from .queue import QueueItem
from .registry import FunctionConfig, Registry
from .scripts import Scripts

MAX_MODELS = 32
MAX_MODEL_NAME = 200
MAX_TOKENS = 10**12  # HINCRBY in Lua: integers written in full up to here
MAX_COST_USD = 10**6
EPSILON_USD = 1e-9  # sums of floats: $2.00 spent as 4 x $0.50 must count as reached
DAYS_SHOWN = 14
COST_SAMPLE = 2000
FIELDS = ("input_tokens", "output_tokens", "cost_usd")


@dataclasses.dataclass(frozen=True)
class Spend:
    cost_usd: float = 0.0
    tokens: int = 0


def spend_of(run: dict[bytes, bytes]) -> Spend:
    """A run's spend from its hash fields (as loaded with the call's state)."""
    try:
        cost = float(run.get(b"cost_usd") or 0)
        tokens = int(run.get(b"input_tokens") or 0) + int(run.get(b"output_tokens") or 0)
    except ValueError:
        return Spend()
    return Spend(cost, tokens)


def budget_error(budget: Budget | None, spend: Spend) -> dict[str, Any] | None:
    """The error a run fails with once its spend reached `budget`; None while under it."""
    if budget is None:
        return None
    over = []
    if budget.usd is not None and spend.cost_usd >= budget.usd - EPSILON_USD:
        over.append(f"${spend.cost_usd:.4f} of its ${budget.usd:.2f} budget")
    if budget.tokens is not None and spend.tokens >= budget.tokens:
        over.append(f"{spend.tokens:,} tokens of its {budget.tokens:,}-token budget")
    if not over:
        return None
    message = ("budget exceeded: the run spent " + " and ".join(over)
               + "; no further step runs or retries")
    return {"name": "BudgetExceededError", "message": message, "error": message,
            "spent": {"usd": round(spend.cost_usd, 6), "tokens": spend.tokens},
            "budget": {"usd": budget.usd, "tokens": budget.tokens}}


def _number(value: Any, cap: float, integer: bool) -> float | None:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0 or value > cap:
        return None
    if integer and value != int(value):
        return None
    return int(value) if integer else float(value)


def parse_report(raw: Any) -> dict[str, Any] | None:
    """A usage report as an SDK sent it, checked and normalized; None when it is absent or
    malformed (usage is a meter: a bad report is ignored, it never fails a step)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        return None
    calls = raw.get("calls")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        return None
    models: dict[str, dict[str, float]] = {}
    for name, entry in list(raw["models"].items())[:MAX_MODELS]:
        if not isinstance(entry, dict):
            return None
        values = {}
        for field in FIELDS:
            integer = field != "cost_usd"
            value = _number(entry.get(field), MAX_COST_USD if not integer else MAX_TOKENS,
                            integer)
            if value is None:
                return None
            values[field] = value
        models[str(name)[:MAX_MODEL_NAME] or "unknown"] = values
    return {"calls": calls, "models": models}


def report_of(outcome: Outcome) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(the op, its usage report) when a call's answer carries one: the one step a call ran
    (alone, or before the function's end: `[StepRun, RunComplete]`)."""
    if not isinstance(outcome, Ops):
        return None
    ops = outcome.steps()
    if len(ops) != 1:
        return None
    op = ops[0]
    report = parse_report(op.get(wire.USAGE_FIELD))
    return (op, report) if report is not None else None


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What one report added: per model (metrics, span attributes), and the run's spend."""

    delta: dict[str, dict[str, float]]
    spend: Spend

    def totals(self) -> dict[str, float]:
        out = dict.fromkeys(FIELDS, 0.0)
        for values in self.delta.values():
            for field in FIELDS:
                out[field] += values.get(field, 0)
        return out


def _decode(value: Any) -> Any:
    return orjson.loads(value) if value else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    rank = max(1, math.ceil(len(values) * q))
    return values[rank - 1]


class Usage:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry) -> None:
        self.redis = redis
        self.scripts = scripts
        self.registry = registry

    async def record(self, run_id: str, fn_id: str, call_id: str, step: str, name: str,
                     attempt: int, report: dict[str, Any], now_ms: int) -> Recorded | None:
        """Apply one call's report; what it added (None: nothing new, or no such run)."""
        out = await self.scripts(
            "usage", [keys.run(run_id), keys.run_usage(run_id),
                      keys.function_usage(fn_id, keys.shard_of(run_id))],
            [call_id, step, name, attempt, orjson.dumps(report), now_ms])
        if int(out[0]) != 1:
            return None
        return Recorded(orjson.loads(out[1]) or {}, Spend(float(out[2]), int(out[3])))

    def over_budget(self, fn: FunctionConfig, run: dict[bytes, bytes]) -> dict[str, Any] | None:
        """Before a call: the budget error if the run may not spend more (no Redis read:
        the spend comes with the run's state)."""
        budget = fn.agent.budget
        return None if budget is None else budget_error(budget, spend_of(run))

    async def retry_gate(self, item: QueueItem) -> dict[str, Any] | None:
        """Before a retry: the budget error if the run spent its budget (then it fails now
        instead of retrying later)."""
        fn = self.registry.functions.get(item.fn_id)
        if fn is None or fn.agent.budget is None:
            return None
        names = [b"cost_usd", b"input_tokens", b"output_tokens"]
        values: Any = await self.redis.hmget(keys.run(item.run_id), names)
        fields = {k: v for k, v in zip(names, values, strict=True) if v}
        return budget_error(fn.agent.budget, spend_of(fields))

    # -- reads (API and dashboard) ---------------------------------------------------------
    async def function_usage(self, fn_id: str, now_ms: int) -> dict[str, Any]:
        """A function's totals, spend per day (the last DAYS_SHOWN, oldest first), per
        model, and the cost per run (p50, p95, max) over the runs started in the last day."""
        today = now_ms // 86_400_000
        day_ago = now_ms - 86_400_000
        # each shard keeps the totals of its own runs: they add up
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in keys.shards():
                pipe.hgetall(keys.function_usage(fn_id, shard))
                pipe.zrevrangebyscore(keys.runs_of_function(fn_id, shard), "+inf", day_ago,
                                      start=0, num=COST_SAMPLE, withscores=True)
            found = await pipe.execute()
        fields: dict[str, Any] = {}
        for totals in found[0::2]:
            for k, v in totals.items():
                name, value = k.decode(), float(v)
                fields[name] = fields.get(name, 0) + value
        newest = sorted((pair for pairs in found[1::2] for pair in pairs),
                        key=lambda p: (-p[1], p[0]))
        run_ids = [member for member, _ in newest[:COST_SAMPLE]]
        costs: list[float] = []
        if run_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hmget(keys.run(run_id.decode()), ["cost_usd", "status"])
                for cost, status in await pipe.execute():
                    if status is not None and status != b"Skipped":
                        costs.append(float(cost or 0))
        costs.sort()
        days = []
        for day in range(today - DAYS_SHOWN + 1, today + 1):
            days.append({"day": day * 86_400_000,
                         "cost_usd": float(fields.get(f"d:{day}:cost_usd", 0)),
                         "tokens": int(fields.get(f"d:{day}:tokens", 0))})
        models: dict[str, dict[str, float]] = {}
        for field, value in fields.items():
            if field.startswith("m:"):
                model, _, what = field[2:].rpartition(":")
                models.setdefault(model, {})[what] = float(value)
        return {
            "function_id": fn_id,
            "cost_usd": float(fields.get("cost_usd", 0)),
            "input_tokens": int(fields.get("input_tokens", 0)),
            "output_tokens": int(fields.get("output_tokens", 0)),
            "runs_with_usage": int(fields.get("runs", 0)),
            "per_day": days,
            "models": models,
            "cost_per_run": {"runs": len(costs), "p50": _percentile(costs, 0.5),
                             "p95": _percentile(costs, 0.95),
                             "max": costs[-1] if costs else None},
        }

    async def functions_usage(self, fn_ids: list[str], now_ms: int) -> dict[str, Any]:
        return {fn_id: await self.function_usage(fn_id, now_ms) for fn_id in fn_ids}


def _step_view(step: dict[str, Any]) -> dict[str, Any]:
    attempts = step.get("attempts") or {}
    if not isinstance(attempts, dict):
        attempts = {}  # Lua's cjson writes an empty object as [] too
    return {
        "cost_usd": round(float(step.get("cost_usd") or 0), 9),
        "input_tokens": int(step.get("input_tokens") or 0),
        "output_tokens": int(step.get("output_tokens") or 0),
        "models": step.get("models") or {},
        # what each attempt that reported usage spent, first attempt first
        "attempts": [{"attempt": int(n), **{f: spent.get(f, 0) for f in FIELDS}}
                     for n, spent in sorted(attempts.items(), key=lambda kv: int(kv[0]))],
    }


def steps_view(raw: dict[bytes, bytes]) -> dict[str, Any]:
    """Per hashed step id, its usage (per model and per attempt), from the run usage hash."""
    return {field.decode()[2:]: _step_view(orjson.loads(value))
            for field, value in raw.items() if field.startswith(b"s:")}


def run_usage_view(run: dict[bytes, bytes]) -> dict[str, Any] | None:
    """A run's usage totals for the run API (None when it reported none)."""
    if b"cost_usd" not in run:
        return None
    spend = spend_of(run)
    return {"cost_usd": round(spend.cost_usd, 9),
            "input_tokens": int(run.get(b"input_tokens") or 0),
            "output_tokens": int(run.get(b"output_tokens") or 0),
            "tokens": spend.tokens,
            "models": _decode(run.get(b"usage_models")) or {}}
