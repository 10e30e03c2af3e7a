"""What flow control costs: throughput of a 3-step function with and without a concurrency
limit, and the per-run overhead of deciding start-time flow control, in one run.

    python -m bench.flow            # 200 runs per variant (about half a minute)
    python -m bench.flow --quick    # 40 runs per variant

Real processes (redis-server, executor, uvicorn app from bench.apps). Variants, all the same
3-step no-op function:
  plain      no flow control: the floor of this benchmark
  limited    concurrency limit 4: at most 4 steps in flight across the whole fleet
  flow       concurrency (per key, never full), throttle, rate limit, priority and an
             idempotency key, all configured far above the load: the cost of the checks
Each variant: K events sent at once, then runs/s = K / (last ended_at - first started_at),
and sequentially (one run at a time) ms per run from each run's own record.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import aiohttp

from ._common import machine, median, processes, run
from .steps import Bench, RunResult, start_stack

VARIANTS = (("plain", "bench/three"), ("limited", "bench/three-limited"),
            ("flow", "bench/three-flow"), ("plain again", "bench/three"))
# "plain again" runs last: its distance from "plain" shows how much of a difference is just
# the order of the runs (a warmer machine, a fuller Redis), not flow control


async def _batch(bench: Bench, name: str, k: int) -> list[RunResult]:
    events = await asyncio.gather(*(
        bench.send(name, {"user": f"u{i % 10}", "id": uuid.uuid4().hex, "vip": i % 7 == 0})
        for i in range(k)))
    return await bench.wait_done(list(events), 3, first_wait_s=0.004 * k, timeout_s=120)


async def _sequential(bench: Bench, name: str, k: int) -> list[float]:
    out = []
    for _ in range(k):
        event = await bench.send(name, {"user": "u0", "id": uuid.uuid4().hex, "vip": False})
        (result,) = await bench.wait_done([event], 3, first_wait_s=0.006)
        out.append(result.ended_ms - result.started_ms)
    return out


async def measure(executor_url: str, k: int, sequential: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        bench = Bench.__new__(Bench)
        bench.http, bench.executor_url, bench.polls = session, executor_url, 0
        for _, name in VARIANTS:  # warm up both sides (a cold first batch runs ~30% slower)
            await _batch(bench, name, k // 2)
        rows = []
        for label, name in VARIANTS:
            runs = await _batch(bench, name, k)
            span_s = (max(r.ended_ms for r in runs) - min(r.started_ms for r in runs)) / 1000
            per_run = await _sequential(bench, name, sequential)
            rows.append((label, k / span_s, median(per_run)))
    floor_rps, floor_ms = rows[0][1], rows[0][2]
    print(f"\n{'variant':12} {'runs':>5} {'runs/s':>8} {'vs plain':>9} "
          f"{'ms/run seq':>11} {'vs plain':>9}")
    print("-" * 60)
    for label, rps, ms in rows:
        print(f"{label:12} {k:>5} {rps:>8.1f} {rps / floor_rps:>8.2f}x "
              f"{ms:>11.2f} {ms / floor_ms:>8.2f}x")
    flow_ms = rows[2][2]
    print(f"\nflow-control overhead per run (sequential median): {flow_ms - floor_ms:+.2f} ms "
          f"({(flow_ms / floor_ms - 1) * 100:+.0f}%)")
    print("plain is the floor measured in this run; 'limited' trades throughput for a cap of "
          "4 steps in flight.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    k, sequential = (40, 10) if args.quick else (200, 30)
    print(f"bench.flow: {machine()}")
    with processes("bench-flow-") as (log_dir, started):
        _, executor, _ = start_stack(log_dir, started, "always", 3600.0, None)
        executor.wait_synced("bench-three", "bench-three-limited", "bench-three-flow")
        run(measure(executor.url, k, sequential))


if __name__ == "__main__":
    main()
