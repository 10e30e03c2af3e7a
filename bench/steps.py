"""Per-step overhead of an N-step no-op function, end to end with real processes.

    python -m bench.steps            # N = 1, 10, 100 (about half a minute)
    python -m bench.steps --quick    # fewer runs (under 30 s)

Starts a redis-server, the executor (`python -m executor dev`) and a uvicorn app
(bench.apps:app) on free loopback ports, and stops them at the end. For each N it sends K
events one at a time (sequential: one run in flight) and then K at once (concurrent), and
reads each run's own `run_started_at` / `ended_at` from the /v1 API:

    ms/step = (ended_at - run_started_at) / (N + 1)     (N step calls + the final call)

The floor, measured in the same run from this process: one loopback aiohttp POST to the
app (a trivial endpoint; the SDK's 0-step call is shown next to it) plus one Redis PING.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import os
import pathlib
import sys
import time
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from tests.procs import App, Executor, Proc, RedisServer, free_port

from ._common import CpuMeter, machine, median, percentile, processes, run
from ._profile import print_profile, profile_args

TARGET_MS = 3.0
TERMINAL = {"Completed", "Failed", "Cancelled"}
NOOP_FN = "bench-noop"
NOOP0_FN = "bench-noop0"


@dataclasses.dataclass
class Plan:
    sizes: list[tuple[int, int]]  # (N steps, K runs)
    floor_iterations: int
    warmup_runs: int
    idle_s: float


FULL = Plan(sizes=[(1, 40), (10, 20), (100, 8)], floor_iterations=300, warmup_runs=5, idle_s=3.0)
QUICK = Plan(sizes=[(1, 8), (10, 5), (100, 2)], floor_iterations=100, warmup_runs=2, idle_s=1.0)


class BenchRedis(RedisServer):
    """The tests' redis-server (AOF on), with a choice of appendfsync."""

    def __init__(self, log_dir: Any, fsync: str) -> None:
        super().__init__(log_dir)
        self.args[self.args.index("--appendfsync") + 1] = fsync


def _ms(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp() * 1000


@dataclasses.dataclass
class RunResult:
    run_id: str
    started_ms: float
    ended_ms: float
    steps: int

    @property
    def ms_per_step(self) -> float:
        return (self.ended_ms - self.started_ms) / (self.steps + 1)


@dataclasses.dataclass
class Row:
    n: int
    mode: str
    runs: list[RunResult]
    polls: int = 0
    cpu_ms_per_call: dict[str, float] = dataclasses.field(default_factory=dict)
    net_cpu_ms_per_call: dict[str, float] = dataclasses.field(default_factory=dict)
    app_ms_per_call: float = float("nan")
    others_cores: float = 0.0  # CPU used by processes not ours, in cores, while this row ran
    # Redis command -> (calls, server-side microseconds) per call, from INFO commandstats
    redis_per_call: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @property
    def per_step(self) -> list[float]:
        return [r.ms_per_step for r in self.runs]

    @property
    def amortized(self) -> float:
        """Wall time of the whole batch per call made (throughput, for concurrent runs)."""
        wall = max(r.ended_ms for r in self.runs) - min(r.started_ms for r in self.runs)
        return wall / sum(r.steps + 1 for r in self.runs)


class Bench:
    def __init__(self, session: aiohttp.ClientSession, executor: Executor, app: App) -> None:
        self.http = session
        self.executor_url = executor.url
        self.app = app
        self.app_origin = app.url.rsplit("/api/inngest", 1)[0]
        self.polls = 0

    async def send(self, name: str, data: dict[str, Any]) -> str:
        body = orjson.dumps({"name": name, "data": data})
        async with self.http.post(f"{self.executor_url}/e/bench-key", data=body,
                                  headers={"Content-Type": "application/json"}) as answer:
            raw = await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"sending {name}: HTTP {answer.status}: {raw[:300]!r}")
        return str(orjson.loads(raw)["ids"][0])

    async def _run_of(self, event_id: str) -> dict[str, Any] | None:
        self.polls += 1
        async with self.http.get(f"{self.executor_url}/v1/events/{event_id}/runs") as answer:
            raw = await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"runs of event {event_id}: HTTP {answer.status}: {raw[:300]!r}")
        runs = orjson.loads(raw)["data"]
        if not runs or runs[0]["status"] not in TERMINAL:
            return None
        found: dict[str, Any] = runs[0]
        if found["status"] != "Completed":
            raise RuntimeError(
                f"run {found['run_id']} ended {found['status']}: "
                f"{found.get('last_error') or found.get('output')}"
            )
        return found

    async def wait_done(
        self, event_ids: list[str], steps: int, first_wait_s: float, timeout_s: float = 60.0
    ) -> list[RunResult]:
        """Poll the /v1 API until every event's run completed. Polling must barely load the
        executor: the first poll waits about as long as the runs should take, and each poll
        asks about one run only, moving on to the next as soon as that one is done."""
        deadline = time.monotonic() + timeout_s
        done: dict[str, dict[str, Any]] = {}
        await asyncio.sleep(first_wait_s)
        interval = 0.003
        pending = list(event_ids)
        while pending:
            found = await self._run_of(pending[0])
            if found is not None:
                done[pending.pop(0)] = found
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} runs still not completed after {timeout_s}s")
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, 0.05)
        return [
            RunResult(
                done[e]["run_id"], _ms(done[e]["run_started_at"]), _ms(done[e]["ended_at"]), steps
            )
            for e in event_ids
        ]

    async def app_timing(self, reset: bool = False) -> dict[str, float]:
        if reset:
            async with self.http.post(f"{self.app_origin}/bench/reset") as answer:
                await answer.read()
        async with self.http.get(f"{self.app_origin}/bench/stats") as answer:
            return dict(await answer.json(loads=orjson.loads))

    # -- phases ---------------------------------------------------------------------------
    async def sequential(self, n: int, k: int) -> list[RunResult]:
        results: list[RunResult] = []
        guess = 0.002 * (n + 1)
        for _ in range(k):
            event_id = await self.send("bench/noop", {"n": n})
            (result,) = await self.wait_done([event_id], n, first_wait_s=guess * 0.9)
            guess = (result.ended_ms - result.started_ms) / 1000
            results.append(result)
        return results

    async def concurrent(self, n: int, k: int) -> list[RunResult]:
        event_ids = await asyncio.gather(*(self.send("bench/noop", {"n": n}) for _ in range(k)))
        return await self.wait_done(list(event_ids), n, first_wait_s=0.002 * (n + 1) * k / 2)


async def measure_floor(bench: Bench, redis_url: str, iterations: int) -> dict[str, float]:
    """Median and mean cost of the pieces every step needs at least once, in ms."""
    call_body = orjson.dumps(
        {
            "event": {"name": "bench/noop0", "data": {}, "id": "floor", "ts": 0},
            "events": [{"name": "bench/noop0", "data": {}, "id": "floor", "ts": 0}],
            "steps": {},
            "ctx": {
                "run_id": "floor",
                "env": "",
                "step_id": "step",
                "attempt": 0,
                "max_attempts": 1,
                "stack": {"stack": [], "current": 0},
                "disable_immediate_execution": False,
                "use_api": False,
                "qi_id": "floor",
            },
            "version": -1,
            "use_api": False,
        }
    )
    headers = {"Content-Type": "application/json", "X-Inngest-Req-Version": "2"}
    # the executor's own aiohttp setup (executor/driver.py)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), skip_auto_headers=("User-Agent",)
    ) as session:

        async def post(url: str) -> None:
            async with session.post(url, data=call_body, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"floor POST {url}: HTTP {answer.status}")

        ping_url = f"{bench.app_origin}/bench/ping"
        sdk_url = f"{bench.app.url}?fnId={NOOP0_FN}&stepId=step"
        redis = Redis.from_url(redis_url)
        await redis.hset("bench:floor", "field", "value")
        samples: dict[str, list[float]] = {}

        async def timed(name: str, op: Any) -> None:
            for _ in range(10):
                await op()
            values = samples.setdefault(name, [])
            for _ in range(iterations):
                started = time.perf_counter()
                await op()
                values.append((time.perf_counter() - started) * 1000)

        try:
            await timed("post", lambda: post(ping_url))
            await bench.app_timing(reset=True)
            await timed("sdk_call", lambda: post(sdk_url))
            in_app = await bench.app_timing()
            await timed("ping", redis.ping)
            await timed("hget", lambda: redis.hget("bench:floor", "field"))
            await timed("write", lambda: redis.incr("bench:floor:counter"))
            await redis.delete("bench:floor", "bench:floor:counter")
        finally:
            await redis.aclose()
    out = {}
    for name, values in samples.items():
        out[name] = median(values)
        out[f"{name}_mean"] = sum(values) / len(values)
    out["sdk_call_in_app_mean"] = in_app["total_ms"] / max(in_app["calls"], 1)
    out["floor"] = out["post"] + out["ping"]
    out["floor_mean"] = out["post_mean"] + out["ping_mean"]
    return out


async def idle_background(meter: CpuMeter, seconds: float) -> dict[str, float]:
    """CPU ms per second each process burns with no run in flight (re-syncs, reaper, ...)."""
    meter.start()
    await asyncio.sleep(seconds)
    return {name: used * 1000 / seconds for name, used in meter.stop().items()}


def start_stack(
    log_dir: pathlib.Path,
    started: list[Proc],
    fsync: str,
    poll_interval: float,
    profile_dir: pathlib.Path | None,
) -> tuple[BenchRedis, Executor, App]:
    """redis-server, the executor and the app, on free ports, each in `started` before it
    starts so that it is stopped whatever happens next."""
    redis = BenchRedis(log_dir, fsync)
    started.append(redis)
    redis.start()
    exec_port, app_port = free_port(), free_port()
    app = App(log_dir, "bench.apps:app", f"http://127.0.0.1:{exec_port}", port=app_port)
    # Executor() passes --poll-interval 1 itself; a second --poll-interval wins over it.
    extra = ["--poll-interval", str(poll_interval)]
    executor = Executor(log_dir, redis.url, [app.url], port=exec_port, extra=extra)
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
        executor.args[1:1] = profile_args(profile_dir / "executor.prof")
        app.args[1:1] = profile_args(profile_dir / "app.prof")
    started.append(app)  # the app first: the executor's first sync must find it
    app.start()
    started.append(executor)
    executor.start()
    executor.wait_synced(NOOP_FN, NOOP0_FN)
    return redis, executor, app


async def measure(
    plan: Plan, redis: BenchRedis, executor: Executor, app: App, meter: CpuMeter
) -> tuple[list[Row], dict[str, float], dict[str, float]]:
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        bench = Bench(session, executor, app)
        for n in (1, 10):  # warm up connections, imports and caches on both sides
            await bench.sequential(n, plan.warmup_runs)
        await bench.concurrent(10, plan.warmup_runs)

        floor = await measure_floor(bench, redis.url, plan.floor_iterations)
        idle = await idle_background(meter, plan.idle_s)

        rows: list[Row] = []
        stats = Redis.from_url(redis.url)
        for n, k in plan.sizes:
            await bench.app_timing(reset=True)
            await stats.config_resetstat()
            bench.polls = 0
            meter.start()
            wall_started = time.monotonic()
            seq = Row(n, "sequential", await bench.sequential(n, k))
            wall = time.monotonic() - wall_started
            cpu = meter.stop()
            commands = await stats.info("commandstats")
            timing = await bench.app_timing()
            calls = sum(r.steps + 1 for r in seq.runs)
            seq.redis_per_call = {
                name.removeprefix("cmdstat_"): (int(v["calls"]) / calls, int(v["usec"]) / calls)
                for name, v in commands.items()
                if name not in ("cmdstat_config|resetstat", "cmdstat_info")
            }
            if timing["calls"] != calls:
                print(
                    f"note: the app saw {timing['calls']} SDK calls for N={n}, expected {calls}",
                    file=sys.stderr,
                )
            seq.polls = bench.polls
            seq.cpu_ms_per_call = {name: used * 1000 / calls for name, used in cpu.items()}
            seq.net_cpu_ms_per_call = {
                name: (used - idle[name] * wall / 1000) * 1000 / calls for name, used in cpu.items()
            }
            seq.app_ms_per_call = timing["total_ms"] / max(timing["calls"], 1)
            seq.others_cores = cpu["others"] / wall
            rows.append(seq)

            bench.polls = 0
            conc = Row(n, f"concurrent x{k}", await bench.concurrent(n, k))
            conc.polls = bench.polls
            rows.append(conc)
        await stats.aclose()
    return rows, floor, idle


def bench_main(
    plan: Plan, fsync: str, poll_interval: float, profile_dir: pathlib.Path | None
) -> bool:
    """Start the stack, measure, stop everything, print the report; True if the target is met."""
    with processes("bench-steps-") as (log_dir, started):
        redis, executor, app = start_stack(log_dir, started, fsync, poll_interval, profile_dir)
        assert app.process and executor.process and redis.process
        meter = CpuMeter(
            {
                "executor": executor.process.pid,
                "app": app.process.pid,
                "redis": redis.process.pid,
                "bench": os.getpid(),
            }
        )
        rows, floor, idle = run(measure(plan, redis, executor, app, meter))
    report(
        rows, floor, idle, f"redis appendfsync={fsync}, executor --poll-interval {poll_interval:g}"
    )
    if profile_dir:
        print_profile("executor", profile_dir / "executor.prof")
        print_profile("app", profile_dir / "app.prof")
    return all(median(r.per_step) <= TARGET_MS for r in rows if r.mode == "sequential")


def report(rows: list[Row], floor: dict[str, float], idle: dict[str, float], setup: str) -> None:
    print(f"\nbench.steps: {machine()}\n{setup}")
    print("\nFloor, from this process over loopback (median; mean in brackets):")
    lines = [
        ("aiohttp POST to a trivial endpoint of the app", "post"),
        ("redis PING", "ping"),
        ("redis HGET", "hget"),
        ("FLOOR = POST + PING", "floor"),
        ("for reference: aiohttp POST of a 0-step SDK call", "sdk_call"),
        ("for reference: redis INCR (a write, so AOF fsync applies)", "write"),
    ]
    for label, key in lines:
        print(f"  {label:<52} {floor[key]:6.3f} ms  ({floor[f'{key}_mean']:.3f})")
    print(
        f"  {'  (0-step SDK call: time inside the app ASGI handler)':<52} "
        f"{floor['sdk_call_in_app_mean']:6.3f} ms  (mean)"
    )

    print("\nms per step = (ended_at - run_started_at) / (N + 1), from each run's own record")
    header = (
        f"{'N':>4} {'mode':<14} {'runs':>4} {'ms/step med':>11} {'p95':>7} {'max':>7} "
        f"{'floor':>6} {'ratio':>6} {'batch ms/call':>13} {'polls':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        med = median(row.per_step)
        print(
            f"{row.n:>4} {row.mode:<14} {len(row.runs):>4} {med:>11.2f} "
            f"{percentile(row.per_step, 95):>7.2f} {max(row.per_step):>7.2f} "
            f"{floor['floor']:>6.2f} {med / floor['floor']:>6.1f} {row.amortized:>13.2f} "
            f"{row.polls:>5}"
        )
    print(
        "ratio = median ms/step / floor. batch ms/call = wall time of the whole batch / calls "
        "made\n(for the concurrent rows: the throughput view; their per-run ms/step includes "
        "waiting behind the other runs)."
    )

    print(
        "\nBackground CPU with no run in flight (ms of CPU per second): "
        + ", ".join(f"{name} {value:.1f}" for name, value in idle.items())
        + "\n('others' = processes not started by this benchmark; a high value means the "
        "machine was busy)"
    )
    print(
        "\nWhere a sequential call's time goes, per call (N + 1 calls per run). CPU from "
        "psutil;\n'net' subtracts the background rate above; 'in app' = wall time inside the "
        "app's ASGI handler."
    )
    header = (
        f"{'N':>4} {'ms/call':>8} {'in app':>7} | {'cpu executor':>12} {'cpu app':>8} "
        f"{'cpu redis':>9} {'cpu bench':>9} {'cpu others':>10} | {'net executor':>12} "
        f"{'net app':>8} {'net redis':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.mode != "sequential":
            continue
        cpu, net = row.cpu_ms_per_call, row.net_cpu_ms_per_call
        print(
            f"{row.n:>4} {median(row.per_step):>8.2f} {row.app_ms_per_call:>7.2f} | "
            f"{cpu['executor']:>12.2f} {cpu['app']:>8.2f} {cpu['redis']:>9.2f} "
            f"{cpu['bench']:>9.2f} {cpu['others']:>10.2f} | {net['executor']:>12.2f} "
            f"{net['app']:>8.2f} "
            f"{net['redis']:>9.2f}"
        )

    print(
        "\nRedis commands per call, sequential (INFO commandstats: includes the sends and "
        "polls; commands run\ninside Lua scripts are counted too, their time is part of "
        "evalsha's). command calls/call (server us/call):"
    )
    for row in rows:
        if row.mode != "sequential":
            continue
        ranked = sorted(row.redis_per_call.items(), key=lambda kv: -kv[1][0])
        print(
            f"  N={row.n}: "
            + ", ".join(
                f"{name} {calls:.2f} ({us:.0f})" for name, (calls, us) in ranked if calls >= 0.05
            )
        )

    busy = max([idle["others"] / 1000] + [r.others_cores for r in rows if r.mode == "sequential"])
    if busy > 0.25:
        print(
            f"\nWARNING: other processes used {busy:.2f} cores of CPU during the measurement; "
            "these numbers are pessimistic. Rerun on a quiet machine."
        )

    seq = [r for r in rows if r.mode == "sequential"]
    worst = max(seq, key=lambda r: median(r.per_step))
    verdict = "MET" if median(worst.per_step) <= TARGET_MS else "NOT MET"
    print(
        f"\nTarget <= {TARGET_MS:.0f} ms/step (sequential medians, N = "
        f"{', '.join(str(r.n) for r in seq)}): {verdict} "
        f"(worst: N={worst.n} at {median(worst.per_step):.2f} ms/step)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.steps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs (under 30 s)")
    parser.add_argument(
        "--fsync",
        choices=["always", "everysec", "no"],
        default="always",
        help="redis appendfsync (default: always, as the tests' redis)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="the executor's re-sync period of the app (default: 1 s; each "
        "re-sync costs CPU in the executor and the app)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with code 1 when the target is not met"
    )
    parser.add_argument(
        "--profile",
        type=pathlib.Path,
        metavar="DIR",
        default=None,
        help="run the executor and the app under cProfile (CPU clock), write "
        "DIR/*.prof and print where their CPU time went (slows them down)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    met = bench_main(QUICK if args.quick else FULL, args.fsync, args.poll_interval, args.profile)
    print(f"\n(total {time.monotonic() - started:.1f} s)")
    raise SystemExit(1 if args.check and not met else 0)


if __name__ == "__main__":
    main()
