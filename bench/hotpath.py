"""Where the CPU of our call path goes: one workload at a time, CPU per unit by process.

    python -m bench.hotpath                      # noop, first and batch workloads
    python -m bench.hotpath --spy DIR            # + py-spy flame graphs of executor and app
    python -m bench.hotpath --no-eager-calls     # first calls only after the ingest script

Starts the same stack as bench.peers ("ours": redis appendfsync always, the executor as the
CLI runs it, the uvicorn app of bench.apps) and measures, each workload alone:

  noop    100-step no-op runs one at a time: wall ms per step, CPU ms per step by process
  first   0-step runs one at a time: event -> first line of user code, CPU ms per run
  batch   K 3-step runs started at once: runs per second, CPU ms per run by process

and, for each, the Redis commands per run (INFO commandstats; a script counts once, and so
does each command it runs).

With --spy, py-spy (pip install py-spy) samples the executor and the app during each
workload and writes DIR/<workload>-<process>.svg (flame graph) and a text summary of the
functions with the most samples of their own, printed at the end. The profile is of the
process as it runs (no cProfile overhead on every call), only while it holds the GIL
(uvloop waits in C with the GIL released, which py-spy would otherwise count as busy).
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import aiohttp
import psutil

from ._common import CpuMeter, machine, median, percentile, processes, run
from .peers import Ours


class Spy:
    """py-spy attached to the named processes for the duration of one workload."""

    def __init__(self, out: pathlib.Path | None, pids: dict[str, int]) -> None:
        self.out = out
        self.pids = pids
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, workload: str) -> None:
        if self.out is None:
            return
        for name, pid in self.pids.items():
            for fmt, ext in (("flamegraph", "svg"), ("raw", "txt")):
                path = self.out / f"{workload}-{name}.{ext}"
                self.procs.append(subprocess.Popen(
                    ["py-spy", "record", "--pid", str(pid), "--rate", "500", "--gil", "--format", fmt,
                     "--output", str(path), "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy needs a moment to attach

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(2)  # SIGINT: py-spy writes its output and exits
        for proc in self.procs:
            proc.wait(30)
        self.procs = []


def summary(raw: pathlib.Path, lines: int = 25) -> str:
    """Self samples per function and inclusive samples per package from a py-spy raw file
    (collapsed stacks: `frame;frame;... count`)."""
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        own[stack.rsplit(";", 1)[-1]] += count
    out = [f"{raw.name}: {total} samples; most samples of their own:"]
    for frame, count in own.most_common(lines):
        out.append(f"  {count * 100 / max(total, 1):5.1f}%  {frame}")
    return "\n".join(out)


async def noop(ours: Ours, runs: int) -> dict[str, float]:
    per_step = []
    for _ in range(runs):
        done = await ours.run("noop", {"n": 100})
        per_step.append((done.ended - done.sent) * 1000 / 100)
    return {"ms per step": median(per_step)}


async def first(ours: Ours, runs: int) -> dict[str, float]:
    lags, acks = [], []
    for _ in range(runs):
        done = await ours.run("first", {})
        lags.append((float(done.result) - done.sent) * 1000)
        acks.append(((done.acked or done.sent) - done.sent) * 1000)
        await asyncio.sleep(0.005)
    return {"first line p50 ms": median(lags), "p90 ms": percentile(lags, 90),
            "event acknowledged p50 ms": median(acks)}


async def batch(ours: Ours, k: int) -> dict[str, float]:
    sent, ended = await ours.batch(k)
    return {"runs per s": k / (ended - sent)}


async def _commands(ours: Ours) -> dict[str, int]:
    """Commands Redis ran so far, by name (those inside scripts counted too)."""
    stats = await ours.redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def measure(ours: Ours, meter: CpuMeter, spy: Spy, args: argparse.Namespace) -> None:
    workloads: list[tuple[str, int, Callable[[], Awaitable[dict[str, float]]]]] = [
        ("noop", args.noop_runs * 100, lambda: noop(ours, args.noop_runs)),
        ("first", args.first_runs, lambda: first(ours, args.first_runs)),
        ("batch", args.batch, lambda: batch(ours, args.batch)),
    ]
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=1.0),
        timeout=aiohttp.ClientTimeout(total=600), skip_auto_headers=("User-Agent",),
    ) as http:
        await ours.open(http)
        try:
            for _ in range(2):  # warm up: connections, imports, caches
                await ours.run("noop", {"n": 10})
                await ours.run("first", {})
            await ours.batch(min(args.batch, 100))
            for name, units, workload in workloads:
                if args.only and name not in args.only:
                    continue
                await asyncio.sleep(1.0)
                spy.start(name)
                before = await _commands(ours)
                meter.start()
                started = time.monotonic()
                result = await workload()
                wall = time.monotonic() - started
                cpu = meter.stop()
                spy.stop()
                after = await _commands(ours)
                unit = "step" if name == "noop" else "run"
                split = ", ".join(f"{proc} {cpu[proc] * 1000 / units:.3f}"
                                  for proc in ("executor", "app", "redis", "client"))
                print(f"{name:<6} " + ", ".join(f"{k} {v:.2f}" for k, v in result.items())
                      + f" | CPU ms per {unit}: {split}; others {cpu['others'] / wall:.2f} "
                      "cores", flush=True)
                runs = units / 100 if name == "noop" else units
                print("       Redis commands per run (scripts count once): " + ", ".join(
                    f"{command} {(after.get(command, 0) - before.get(command, 0)) / runs:.2f}"
                    for command in sorted(after, key=lambda c: before.get(c, 0) - after[c])
                    if after[command] - before.get(command, 0) >= runs / 10), flush=True)
        finally:
            await ours.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spy", type=pathlib.Path, metavar="DIR", default=None,
                        help="sample the executor and the app with py-spy into DIR")
    parser.add_argument("--noop-runs", type=int, default=5)
    parser.add_argument("--first-runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--only", nargs="*", choices=["noop", "first", "batch"])
    parser.add_argument("--no-eager-calls", action="store_true",
                        help="run the executor with --no-eager-calls (first calls after the "
                             "ingest script)")
    args = parser.parse_args()
    if args.spy is not None:
        if shutil.which("py-spy") is None:
            raise SystemExit("--spy needs py-spy: pip install py-spy")
        args.spy.mkdir(parents=True, exist_ok=True)
    print(f"bench.hotpath: {machine()}")
    with processes("bench-hotpath-") as (log_dir, started):
        ours = Ours(["--no-eager-calls"] if args.no_eager_calls else [])
        ours.start(log_dir, started)
        pids = dict(ours.pids)
        meter = CpuMeter({**pids, "client": psutil.Process().pid})
        spy = Spy(args.spy, {k: v for k, v in pids.items() if k != "redis"})
        run(measure(ours, meter, spy, args))
    if args.spy is not None:
        for raw in sorted(args.spy.glob("*.txt")):
            print("\n" + summary(raw))


if __name__ == "__main__":
    main()
