"""`GET /metrics`: the executor's metrics in the Prometheus text format (prometheus-client).

Counters and the histogram count what this process did (Prometheus sums the processes);
the queue and stalled-runs gauges are read from Redis at scrape time, so every process
reports the same shared state. One registry per executor, never the global one, so several
executors in one process (tests) do not collide. `NoMetrics` (`--no-metrics`) has the same
methods doing nothing.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from redis.asyncio import Redis

from . import keys, shards

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds: a no-op step takes ms, an LLM call seconds to minutes
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STALLED_CHECKED = 1000  # stalled entries whose run status is checked per scrape


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_started_total = Counter(
            "inngest_like_runs_started", "Runs started (including skipped ones), by function",
            ["function"], registry=r)
        self.runs_ended_total = Counter(
            "inngest_like_runs_ended", "Runs ended, by function and final status",
            ["function", "status"], registry=r)
        self.step_duration = Histogram(
            "inngest_like_step_duration_seconds",
            "Duration of calls to the app (one step attempt each), by function and outcome",
            ["function", "status"], buckets=STEP_BUCKETS, registry=r)
        self.retries_total = Counter(
            "inngest_like_step_retries", "Failed attempts scheduled for a retry, by function",
            ["function"], registry=r)
        self.lease_expiries_total = Counter(
            "inngest_like_lease_expiries",
            "Queue items whose lease expired (their worker died or hung) and were put back",
            registry=r)
        self.stalls_total = Counter(
            "inngest_like_stalls", "Stalls detected (one per stalled run and stall)",
            ["function"], registry=r)
        self.tokens_total = Counter(
            "inngest_like_tokens", "Tokens step bodies reported, by function, model and kind",
            ["function", "model", "kind"], registry=r)
        self.cost_total = Counter(
            "inngest_like_cost_usd", "Cost (USD) step bodies reported, by function and model",
            ["function", "model"], registry=r)
        self.queue_depth = Gauge(
            "inngest_like_queue_depth",
            "Queue items: ready (due, waiting for a worker), scheduled (due later), leased",
            ["state"], registry=r)
        self.oldest_ready_age = Gauge(
            "inngest_like_queue_oldest_ready_age_seconds",
            "How long the oldest due item has waited for a worker (0 when none)", registry=r)
        self.stalled_runs = Gauge(
            "inngest_like_runs_stalled", "Running runs flagged stalled right now", registry=r)
        self._steps: dict[tuple[str, str], Histogram] = {}

    # -- what the engine reports ---------------------------------------------------------
    def runs_started(self, function_ids: list[str]) -> None:
        for fn_id in function_ids:
            self.runs_started_total.labels(fn_id).inc()

    def run_ended(self, fn_id: str, status: str) -> None:
        self.runs_ended_total.labels(fn_id, status).inc()

    def step(self, fn_id: str, status: str, seconds: float) -> None:
        child = self._steps.get((fn_id, status))  # once per call: skip the labels() lookup
        if child is None:
            child = self._steps[(fn_id, status)] = self.step_duration.labels(fn_id, status)
        child.observe(max(seconds, 0.0))

    def retry(self, fn_id: str) -> None:
        self.retries_total.labels(fn_id).inc()

    def leases_expired(self, count: int) -> None:
        self.lease_expiries_total.inc(count)

    def stalled(self, fn_id: str) -> None:
        self.stalls_total.labels(fn_id).inc()

    def usage(self, fn_id: str, delta: dict[str, dict[str, float]]) -> None:
        for model, values in delta.items():
            for kind in ("input", "output"):
                tokens = values.get(f"{kind}_tokens", 0)
                if tokens:
                    self.tokens_total.labels(fn_id, model, kind).inc(tokens)
            if values.get("cost_usd"):
                self.cost_total.labels(fn_id, model).inc(values["cost_usd"])

    # -- the scrape ----------------------------------------------------------------------
    async def render(self, redis: Redis, now_ms: int) -> bytes:
        """The text exposition, with the shared gauges read from Redis first."""
        # every shard's queue and stalled index, in one round trip, summed
        async with redis.pipeline(transaction=False) as pipe:
            for shard in keys.shards():
                queue = keys.queue(shard)
                pipe.zcount(queue.ready, "-inf", now_ms)
                pipe.zcount(queue.ready, f"({now_ms}", "+inf")
                pipe.zcard(queue.leased)
                pipe.zrange(queue.ready, 0, 0, withscores=True)
                pipe.zrange(keys.runs_stalled(shard), 0, STALLED_CHECKED - 1, withscores=True)
            replies = await pipe.execute()
        per_shard = [replies[at:at + 5] for at in range(0, len(replies), 5)]
        self.queue_depth.labels("ready").set(sum(r[0] for r in per_shard))
        self.queue_depth.labels("scheduled").set(sum(r[1] for r in per_shard))
        self.queue_depth.labels("leased").set(sum(r[2] for r in per_shard))
        heads = [r[3][0][1] for r in per_shard if r[3]]
        oldest = min(heads) if heads else None
        stalled = [run_id for run_id, _ in list(shards.oldest_first(
            shards.entries(r[4]) for r in per_shard))[:STALLED_CHECKED]]
        self.oldest_ready_age.set(max(0.0, (now_ms - oldest) / 1000)
                                  if oldest is not None and oldest <= now_ms else 0.0)
        running = 0
        if stalled:
            async with redis.pipeline(transaction=False) as pipe:
                for run_id in stalled:
                    pipe.hget(keys.run(run_id), "status")
                running = sum(1 for s in await pipe.execute() if s == b"Running")
        self.stalled_runs.set(running)
        return generate_latest(self.registry)


class NoMetrics(Metrics):
    """Metrics off: every report is a no-op (no registry is built)."""

    def __init__(self) -> None:
        pass

    def runs_started(self, function_ids: list[str]) -> None:
        pass

    def run_ended(self, fn_id: str, status: str) -> None:
        pass

    def step(self, fn_id: str, status: str, seconds: float) -> None:
        pass

    def retry(self, fn_id: str) -> None:
        pass

    def leases_expired(self, count: int) -> None:
        pass

    def stalled(self, fn_id: str) -> None:
        pass

    def usage(self, fn_id: str, delta: dict[str, dict[str, float]]) -> None:
        pass

    async def render(self, redis: Redis, now_ms: int) -> bytes:
        raise LookupError("metrics are off (--no-metrics)")
