"""Agent operations, wired once per executor process: cost meters and budgets (`usage.py`),
heartbeats (`heartbeats.py`), stall detection (`stalls.py`), traces (`tracing.py`) and
metrics (`metrics.py`). The engine calls in at a few places: the worker around each call
(`watch`, see `call_watch.py`), the op switch before a retry (`retry_gate`), ingest when runs
start, the lifecycle when a run ends, the scheduler for the stall sweep.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from .agent_options import DEFAULT_STALL_THRESHOLD_MS
from .call_watch import CallWatch
from .clock import Clock
from .heartbeats import Heartbeats
from .ingest import Ingest
from .metrics import Metrics, NoMetrics
from .queue import QueueItem
from .registry import FunctionConfig, Registry
from .scripts import Scripts
from .stalls import Stalls, stalled_view
from .state import CallState
from .tracing import Tracing, trace_field, trace_id_of
from .usage import Usage, run_usage_view

log = logging.getLogger("inngest_like.executor")


class Operations:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry, ingest: Ingest,
                 clock: Clock, *, tracing: Tracing | None = None, metrics: bool = True,
                 stall_threshold_ms: int = DEFAULT_STALL_THRESHOLD_MS) -> None:
        self.redis = redis
        self.clock = clock
        self.tracing = tracing
        self.metrics = Metrics() if metrics else NoMetrics()
        self.usage = Usage(redis, scripts, registry)
        self.heartbeats = Heartbeats(redis, scripts)
        self.stalls = Stalls(redis, scripts, registry, ingest, self.metrics, clock,
                             stall_threshold_ms)

    def watch(self, item: QueueItem, state: CallState, fn: FunctionConfig,
              now: int) -> CallWatch:
        return CallWatch(self, item, state, fn, now)

    async def retry_gate(self, item: QueueItem) -> dict[str, Any] | None:
        """Before a retry is scheduled: the error that fails the run instead (its budget is
        spent), or None (the retry is counted)."""
        stop = await self.usage.retry_gate(item)
        if stop is None:
            self.metrics.retry(item.fn_id)
        return stop

    # -- the run's start and end -----------------------------------------------------------
    def run_fields(self, run_id: str) -> dict[str, str]:
        """Fields a new run's hash starts with: its span context when tracing."""
        return {"trace": trace_field(run_id)} if self.tracing is not None else {}

    def runs_started(self, created: list[str], runs: list[dict[str, Any]]) -> None:
        functions = {r.get("run_id"): (r.get("fields") or {}).get("function_id") for r in runs}
        self.metrics.runs_started([str(functions[r]) for r in created if functions.get(r)])

    def run_ended(self, fields: dict[bytes, bytes]) -> None:
        try:
            self.metrics.run_ended((fields.get(b"function_id") or b"").decode(),
                                   (fields.get(b"status") or b"").decode())
            if self.tracing is not None:
                self.tracing.run_ended(fields)
        except Exception:  # telemetry must never keep a run's end events from going out
            log.exception("recording the end of run %s failed", fields.get(b"run_id"))

    def shutdown(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()


def run_view(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """What the run API and page show of agent operations: the run's usage, whether (why,
    since when) it is stalled, and its trace id (when it started with tracing on)."""
    run_id = (fields.get(b"run_id") or b"").decode()
    stored = fields.get(b"trace")
    return {"usage": run_usage_view(fields), "stalled": stalled_view(fields),
            "trace_id": trace_id_of(run_id, stored) if stored else None}
