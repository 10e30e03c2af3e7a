"""Does a step's cost grow with the run? Per-step time of a run of 500 steps that each
return 10 KB, against a run of 10 such steps, with checkpointing (our SDK's default) and
without it (one call per step: every call resends every earlier output and the SDK replays
them all, O(n^2) bytes per run). Real processes, sequential runs, medians.

    python -m bench.growth            # about a minute
    python -m bench.growth --quick    # 200 steps instead of 500

The ratio is the point: a flat per-step cost shows as about 1.0x. The floor printed beside
it (10-step runs) is measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import tempfile
import time
from typing import Any

import aiohttp

from tests.procs import App, Executor, Proc, RedisServer, free_port

from .steps import TERMINAL, _ms

SIZE = 10_240


async def _run(session: aiohttp.ClientSession, url: str, n: int) -> float:
    """ms per step of one run of `n` steps (the run's own start and end times)."""
    async with session.post(f"{url}/e/bench", json={"name": "bench/big",
                                                   "data": {"n": n, "size": SIZE}}) as answer:
        event_id = (await answer.json())["ids"][0]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        async with session.get(f"{url}/v1/events/{event_id}/runs") as answer:
            runs: list[dict[str, Any]] = (await answer.json())["data"]
        if runs and runs[0]["status"] in TERMINAL:
            run = runs[0]
            assert run["status"] == "Completed", run
            return (_ms(run["ended_at"]) - _ms(run["run_started_at"])) / (n + 1)
        await asyncio.sleep(0.05)  # the benchmark's own polling, not the engine's
    raise TimeoutError(f"a {n}-step run did not finish")


async def _measure(url: str, long_n: int, repeats: int) -> tuple[float, float]:
    async with aiohttp.ClientSession() as session:
        await _run(session, url, 10)  # warm up
        short = statistics.median([await _run(session, url, 10) for _ in range(repeats * 3)])
        long = statistics.median([await _run(session, url, long_n) for _ in range(repeats)])
    return short, long


def _stack(directory: pathlib.Path, checkpointing: bool, started: list[Proc]) -> Executor:
    redis = RedisServer(directory)
    started.append(redis)
    redis.start()
    exec_port = free_port()
    app = App(directory, "bench.apps:app", f"http://127.0.0.1:{exec_port}",
              env={"BENCH_CHECKPOINTING": "1" if checkpointing else "0"},
              name=f"app-{'ck' if checkpointing else 'plain'}")
    started.append(app)
    app.start()
    executor = Executor(directory, redis.url, [app.url], port=exec_port,
                        extra=["--poll-interval", "5"])
    started.append(executor)
    executor.start()
    executor.wait_synced("bench-big")
    return executor


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    long_n, repeats = (200, 1) if args.quick else (500, 2)
    print(f"per-step time, {long_n} steps of {SIZE // 1024} KB vs 10 steps (medians)")
    for checkpointing in (True, False):
        started: list[Proc] = []
        with tempfile.TemporaryDirectory() as tmp:
            try:
                executor = _stack(pathlib.Path(tmp), checkpointing, started)
                short, long = asyncio.run(_measure(executor.url, long_n, repeats))
            finally:
                for proc in reversed(started):
                    proc.stop()
        label = "checkpointing (default)" if checkpointing else "one call per step"
        print(f"  {label:<24} 10 steps {short:6.2f} ms/step   {long_n} steps {long:6.2f} "
              f"ms/step   ratio {long / short:5.2f}x")


if __name__ == "__main__":
    main()
