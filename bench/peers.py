"""Side by side with Restate and DBOS: the same workloads on three systems, in interleaved
rounds, medians, ratios to Restate measured in the same run.

    pip install -e '.[bench]'          # restate-sdk, dbos, hypercorn (never needed by tests)
    python -m bench.peers              # 5 rounds (about 9 minutes on 2 cores)
    python -m bench.peers --quick      # 2 short rounds (about 2 minutes)

The Restate server is the binary of the npm package @restatedev/restate-server, installed on
first use with `npm install --prefix bench/.peers` (git-ignored; BENCH_RESTATE_SERVER=PATH
uses another binary). Every process listens on 127.0.0.1 only, on free ports:

  ours     redis-server (appendfsync always) + `python -m executor dev` + uvicorn
           bench.apps:app (functions bench-noop, bench-big, bench-three, bench-first)
  Restate  restate-server (single node, default configuration, RocksDB) + Hypercorn serving
           bench.peer_restate:app (Python SDK, one `ctx.run_typed` per step), registered
           with the admin API and invoked through the HTTP ingress
  DBOS     uvicorn serving bench.peer_dbos:app (DBOS workflows and steps, SQLite system
           database), in which the workflows run

Workloads, every run started by one HTTP request from this process:
  1. ms per no-op step, 100 steps: (end of the run - request sent) / 100, runs one at a time
  2. per-step time of a run of 500 steps that each return 10 KB, divided by that of a
     10-step run (1.0x: flat; above: a step costs more as the run grows)
  3. event -> first line of user code: the function's first line records time.time() and
     returns it; minus the time the request was sent; runs one at a time, p50
  4. 3-step runs per second with K (1000) started at once: K / (last end - first request)
  5. CPU per 3-step run, all the system's processes (psutil), over workload 4
  6. idle CPU of each system's processes, in % of one core (all three idle together, a few
     seconds after the last runs ended)
"The end of the run" is the client's receipt of the answer for Restate and DBOS (their
requests wait for the result), and the run's own `ended_at` (written with its output) for
ours, whose events return at once; this process watches Redis for it.

Each round runs every workload on every system, one system after the other (the order
rotates each round), so that load from other processes spreads over all three.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import importlib.util
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import orjson
import psutil
from redis.asyncio import Redis

from executor import keys
from tests.procs import ROOT, App, Executor, Proc, free_port, wait_for

from ._common import CpuMeter, machine, median, percentile, processes, run
from .steps import BenchRedis

RESTATE_VERSION = "1.7.12"
PEERS_DIR = ROOT / "bench" / ".peers"
SYSTEMS = ("ours", "Restate", "DBOS")
BIG_SIZE = 10_240


@dataclasses.dataclass
class Plan:
    rounds: int
    noop_runs: int  # 100-step runs per system per round
    big_short_runs: int  # 10-step runs of 10 KB steps
    big_long_runs: int
    big_long_steps: int
    first_runs: int
    batch: int  # 3-step runs started at once
    idle_s: float
    settle_s: float  # wait after the last batch before measuring idle CPU


FULL = Plan(rounds=5, noop_runs=3, big_short_runs=5, big_long_runs=1, big_long_steps=500,
            first_runs=20, batch=1000, idle_s=6.0, settle_s=6.0)
QUICK = Plan(rounds=2, noop_runs=2, big_short_runs=3, big_long_runs=1, big_long_steps=100,
             first_runs=8, batch=200, idle_s=2.0, settle_s=2.0)


# -- the Restate server binary -----------------------------------------------------------------
def _npm_platform() -> str:
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower())
    if not system or not arch:
        raise SystemExit(f"no restate-server build for {sys.platform} {platform.machine()}")
    return f"{system}-{arch}"


def restate_server() -> pathlib.Path:
    """The restate-server binary: BENCH_RESTATE_SERVER, or the npm package's, installed
    into bench/.peers on first use (the binary ships in a per-platform npm package)."""
    if os.environ.get("BENCH_RESTATE_SERVER"):
        return pathlib.Path(os.environ["BENCH_RESTATE_SERVER"])
    binary = (PEERS_DIR / "node_modules" / "@restatedev" /
              f"restate-server-{_npm_platform()}" / "bin" / "restate-server")
    if binary.exists() and RESTATE_VERSION in _version(binary):
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the Restate server (or set "
                         "BENCH_RESTATE_SERVER to a restate-server binary)")
    print(f"installing @restatedev/restate-server@{RESTATE_VERSION} into {PEERS_DIR} (npm)")
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    # --ignore-scripts: the binary comes in an optional dependency; no install script is
    # needed (one of the package's dependencies would otherwise phone home)
    subprocess.run([npm, "install", "--prefix", str(PEERS_DIR), "--no-audit", "--no-fund",
                    "--ignore-scripts", f"@restatedev/restate-server@{RESTATE_VERSION}"],
                   check=True)
    if not binary.exists():
        raise SystemExit(f"npm installed no binary at {binary}")
    return binary


def _version(binary: pathlib.Path) -> str:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _check_imports() -> None:
    missing = [name for name in ("restate", "dbos", "hypercorn")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: pip install -e '.[bench]' "
                         "(or pip install restate-sdk dbos hypercorn)")


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# -- the three systems ---------------------------------------------------------------------------
@dataclasses.dataclass
class Done:
    sent: float  # time.time() just before the request
    ended: float  # time.time() of the run's end (see the module doc)
    result: Any
    acked: float | None = None  # ours: when the event's POST was answered (stored)


class System:
    name = ""
    pids: dict[str, int]

    def start(self, log_dir: pathlib.Path, started: list[Proc]) -> None:
        """Start the system's processes, each appended to `started` before it starts."""
        raise NotImplementedError

    async def open(self, http: aiohttp.ClientSession) -> None:
        self.http = http

    async def close(self) -> None:
        pass

    async def run(self, workflow: str, data: dict[str, Any]) -> Done:
        raise NotImplementedError

    async def batch(self, k: int) -> tuple[float, float]:
        """Start `k` 3-step runs at once; (first request sent, last run ended)."""
        raise NotImplementedError


class HttpRuns(System):
    """Restate and DBOS: one POST per run, answered with the run's result."""

    base = ""

    def _url(self, workflow: str) -> str:
        return f"{self.base}/{workflow}"

    def _result(self, body: bytes) -> Any:
        return orjson.loads(body)

    async def run(self, workflow: str, data: dict[str, Any]) -> Done:
        body = orjson.dumps(data)
        headers = {"content-type": "application/json"}
        sent = time.time()
        async with self.http.post(self._url(workflow), data=body, headers=headers) as answer:
            raw = await answer.read()
            ended = time.time()
        if answer.status != 200:
            raise RuntimeError(f"{self.name} {workflow}: HTTP {answer.status}: {raw[:300]!r}")
        return Done(sent, ended, self._result(raw))

    async def batch(self, k: int) -> tuple[float, float]:
        sent = time.time()
        done = await asyncio.gather(*(self.run("three", {}) for _ in range(k)))
        assert all(d.result == 3 for d in done), done[:3]
        return sent, max(d.ended for d in done)


class Restate(HttpRuns):
    name = "Restate"

    def start(self, log_dir: pathlib.Path, started: list[Proc]) -> None:
        binary = restate_server()
        self.version = _version(binary)
        data = log_dir / "restate-data"
        ingress, admin, fabric, app_port = free_port(), free_port(), free_port(), free_port()
        config = log_dir / "restate.toml"
        # loopback TCP only, no telemetry, quiet logs; everything else the defaults
        config.write_text(
            f'bind-ip = "127.0.0.1"\nlisten-mode = "tcp"\nbind-port = {fabric}\n'
            f'node-name = "bench"\nbase-dir = "{data}"\ndisable-telemetry = true\n'
            'log-filter = "warn"\nlog-disable-ansi-codes = true\n'
            f'[admin]\nbind-port = {admin}\ndisable-web-ui = true\n'
            f'[ingress]\nbind-port = {ingress}\n')
        server = Proc("restate-server", [str(binary), "--config-file", str(config),
                                         "--no-logo"], log_dir)
        started.append(server)
        server.start()
        self.admin = f"http://127.0.0.1:{admin}"
        self.base = f"http://127.0.0.1:{ingress}/bench"
        wait_for(lambda: httpx.get(f"{self.admin}/health", timeout=1).status_code == 200, 60,
                 "restate-server admin /health")
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{ingress}/restate/health",
                                   timeout=1).status_code == 200, 60,
                 "restate-server ingress /restate/health")
        # Hypercorn as the SDK's docs configure it for production, but serving in its own
        # process (workers = 0: one process, as ours and DBOS have one app process)
        hyper = log_dir / "hypercorn.toml"
        hyper.write_text(f'bind = "127.0.0.1:{app_port}"\nworkers = 0\n'
                         "h2_max_concurrent_streams = 2147483647\n"
                         "keep_alive_max_requests = 2147483647\n"
                         "keep_alive_timeout = 2147483647\n")
        app = Proc("restate-app", [sys.executable, "-m", "hypercorn", "--config", str(hyper),
                                   "bench.peer_restate:app"], log_dir)
        started.append(app)
        app.start()
        uri = f"http://127.0.0.1:{app_port}"

        def register() -> bool:
            answer = httpx.post(f"{self.admin}/deployments", json={"uri": uri, "force": True},
                                timeout=10)
            return answer.status_code in (200, 201)

        wait_for(register, 60, "registering the Restate app with restate-server")
        assert server.process and app.process
        self.pids = {"server": server.process.pid, "app": app.process.pid}


class Dbos(HttpRuns):
    name = "DBOS"

    def _result(self, body: bytes) -> Any:
        return orjson.loads(body)["result"]

    def start(self, log_dir: pathlib.Path, started: list[Proc]) -> None:
        port = free_port()
        app = Proc("dbos-app", [sys.executable, "-m", "uvicorn", "bench.peer_dbos:app",
                                "--host", "127.0.0.1", "--port", str(port),
                                "--log-level", "warning"],
                   log_dir, {"BENCH_DBOS_DB": str(log_dir / "dbos.sqlite")})
        started.append(app)
        app.start()
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.base}/health", timeout=1).status_code == 200, 60,
                 "the DBOS app /health")
        assert app.process
        self.pids = {"app": app.process.pid}


class Ours(System):
    name = "ours"
    EVENTS = {"noop": "bench/noop", "big": "bench/big", "three": "bench/three",
              "first": "bench/first"}

    def __init__(self, executor_args: list[str] | None = None) -> None:
        self.executor_args = executor_args or []  # more options of `python -m executor dev`

    def start(self, log_dir: pathlib.Path, started: list[Proc]) -> None:
        redis = BenchRedis(log_dir, "always")
        started.append(redis)
        redis.start()
        exec_port, app_port = free_port(), free_port()
        app = App(log_dir, "bench.apps:app", f"http://127.0.0.1:{exec_port}", port=app_port)
        # the CLI's defaults for what the tests' Executor sets shorter: the re-sync period
        # (5 s; it shows in the idle CPU) and the lease (20 s; the tests' 2 s expires under
        # load and the same call is made twice)
        executor = Executor(log_dir, redis.url, [app.url], port=exec_port,
                            extra=["--poll-interval", "5", "--lease-seconds", "20",
                                   *self.executor_args])
        started.append(app)  # the app first: the executor's first sync must find it
        app.start()
        started.append(executor)
        executor.start()
        executor.wait_synced("bench-noop", "bench-big", "bench-three", "bench-first")
        assert redis.process and executor.process and app.process
        self.redis_url, self.url = redis.url, executor.url
        self.pids = {"executor": executor.process.pid, "app": app.process.pid,
                     "redis": redis.process.pid}
        self.guess: dict[tuple[str, int], float] = {}

    async def open(self, http: aiohttp.ClientSession) -> None:
        await super().open(http)
        self.redis = Redis.from_url(self.redis_url)

    async def close(self) -> None:
        await self.redis.aclose()

    async def _send(self, workflow: str, data: dict[str, Any]) -> str:
        body = orjson.dumps({"name": self.EVENTS[workflow], "data": data})
        async with self.http.post(f"{self.url}/e/bench-key", data=body,
                                  headers={"content-type": "application/json"}) as answer:
            raw = await answer.read()
        if answer.status != 200:
            raise RuntimeError(f"ours {workflow}: HTTP {answer.status}: {raw[:300]!r}")
        return str(orjson.loads(raw)["ids"][0])

    async def _run_ids(self, event_ids: list[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:
                pipe.lindex(keys.event_runs(event_id, 0), 0)
            found = await pipe.execute()
        if not all(found):
            raise RuntimeError("an event started no run")
        return [bytes(x).decode() for x in found]

    async def _ends(self, run_ids: list[str]) -> list[tuple[float, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), ["status", "ended_at", "output"])
            rows = await pipe.execute()
        out = []
        for run_id, (status, ended_at, output) in zip(run_ids, rows, strict=True):
            if status != b"Completed":
                raise RuntimeError(f"ours: run {run_id} is {status!r}: {output!r}")
            # ended_at is whole ms: + 0.5 ms is the middle of the millisecond it ended in
            out.append((int(ended_at) / 1000 + 0.0005, orjson.loads(output)))
        return out

    async def run(self, workflow: str, data: dict[str, Any]) -> Done:
        shape = (workflow, int(data.get("n", 0)))
        sent = time.time()
        event_id = await self._send(workflow, data)
        acked = time.time()
        # first look when the run should about be done (the last run of this shape), then
        # every millisecond: a look is one HMGET, nothing for the executor to do
        await asyncio.sleep(self.guess.get(shape, 0.0) * 0.9)
        run_id = ""
        while True:
            if not run_id:
                ids = await self.redis.lindex(keys.event_runs(event_id, 0), 0)
                run_id = bytes(ids).decode() if ids else ""
            if run_id:
                status = await self.redis.hget(keys.run(run_id), "status")
                if status in (b"Completed", b"Failed", b"Cancelled"):
                    break
            await asyncio.sleep(0.001)
        ((ended, result),) = await self._ends([run_id])
        self.guess[shape] = ended - sent
        return Done(sent, ended, result, acked)

    async def batch(self, k: int) -> tuple[float, float]:
        base = await self.redis.zcard(keys.runs(0))
        sent = time.time()
        event_ids = await asyncio.gather(*(self._send("three", {}) for _ in range(k)))
        while True:  # two ZCARDs every 20 ms: done when all k runs exist and none is running
            await asyncio.sleep(0.02)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.runs(0))
                pipe.zcard(keys.runs_running(0))
                total, running = await pipe.execute()
            if total >= base + k and running == 0:
                break
        ends = await self._ends(await self._run_ids(list(event_ids)))
        assert all(result == 3 for _, result in ends)
        return sent, max(end for end, _ in ends)


# -- measuring -----------------------------------------------------------------------------------
class TreeCpuMeter(CpuMeter):
    """CpuMeter counting each named process with all its descendants (a server that
    forks workers is counted whole); this process alone, without the servers it started."""

    def _now(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            total = 0.0
            tree = [proc] if proc.pid == os.getpid() else [proc, *proc.children(recursive=True)]
            for one in tree:
                try:
                    times = one.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            out[name] = total
        machine_now = psutil.cpu_times()
        out["others"] = (sum(machine_now) - machine_now.idle - getattr(machine_now, "iowait", 0.0)
                         - sum(out.values()))
        return out


@dataclasses.dataclass
class Samples:
    noop_ms_per_step: list[float] = dataclasses.field(default_factory=list)
    big_short: list[float] = dataclasses.field(default_factory=list)  # ms per step
    big_long: list[float] = dataclasses.field(default_factory=list)
    first_ms: list[float] = dataclasses.field(default_factory=list)
    ack_ms: list[float] = dataclasses.field(default_factory=list)  # ours: event -> stored
    runs_per_s: list[float] = dataclasses.field(default_factory=list)
    cpu_ms_per_run: list[float] = dataclasses.field(default_factory=list)
    cpu_split: list[dict[str, float]] = dataclasses.field(default_factory=list)
    client_cpu_ms_per_run: list[float] = dataclasses.field(default_factory=list)
    others_cores: list[float] = dataclasses.field(default_factory=list)
    idle_pct: list[float] = dataclasses.field(default_factory=list)
    idle_split: list[dict[str, float]] = dataclasses.field(default_factory=list)

    def growth(self) -> float:
        return median(self.big_long) / median(self.big_short)


async def _per_step(system: System, workflow: str, data: dict[str, Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        done = await system.run(workflow, data)
        assert done.result == data["n"], (system.name, workflow, done.result)
        out.append((done.ended - done.sent) * 1000 / data["n"])
    return out


async def _first(system: System, runs: int, samples: Samples) -> None:
    for _ in range(runs):
        done = await system.run("first", {})
        samples.first_ms.append((float(done.result) - done.sent) * 1000)
        if done.acked is not None:
            samples.ack_ms.append((done.acked - done.sent) * 1000)
        await asyncio.sleep(0.005)


def _split(cpu: dict[str, float], system: System) -> dict[str, float]:
    return {name: cpu[f"{system.name}.{name}"] for name in system.pids}


async def _batch(system: System, meter: CpuMeter, k: int, samples: Samples,
                 gap_s: float) -> None:
    await asyncio.sleep(gap_s)  # let the previous system's work after its runs settle
    meter.start()
    started = time.monotonic()
    sent, ended = await system.batch(k)
    cpu = meter.stop()
    wall = time.monotonic() - started
    split = _split(cpu, system)
    samples.runs_per_s.append(k / (ended - sent))
    samples.cpu_ms_per_run.append(sum(split.values()) * 1000 / k)
    samples.cpu_split.append({name: used * 1000 / k for name, used in split.items()})
    samples.client_cpu_ms_per_run.append(cpu["client"] * 1000 / k)
    samples.others_cores.append(cpu["others"] / wall)


async def _idle(systems: list[System], meter: CpuMeter, seconds: float,
                samples: dict[str, Samples]) -> None:
    meter.start()
    await asyncio.sleep(seconds)
    cpu = meter.stop()
    for system in systems:
        split = _split(cpu, system)
        samples[system.name].idle_pct.append(sum(split.values()) * 100 / seconds)
        samples[system.name].idle_split.append(
            {name: used * 100 / seconds for name, used in split.items()})


async def _warm_up(system: System, plan: Plan) -> None:
    for _ in range(3):
        await system.run("noop", {"n": 10})
        await system.run("big", {"n": 10, "size": BIG_SIZE})
        await system.run("first", {})
    await system.batch(min(plan.batch, 100))


async def measure(systems: list[System], meter: CpuMeter, plan: Plan) -> dict[str, Samples]:
    samples = {s.name: Samples() for s in systems}
    async with aiohttp.ClientSession(
        # idle connections closed after 1 s, before any server's keep-alive timeout (uvicorn:
        # 5 s) can close one under a request
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=1.0),
        timeout=aiohttp.ClientTimeout(total=600),
        skip_auto_headers=("User-Agent",),
    ) as http:
        for system in systems:
            await system.open(http)
        try:
            for system in systems:
                await _warm_up(system, plan)
            for round_no in range(plan.rounds):
                shift = round_no % len(systems)
                order = systems[shift:] + systems[:shift]
                print(f"round {round_no + 1}/{plan.rounds}: "
                      f"{', '.join(s.name for s in order)}", flush=True)
                steps: list[tuple[str, Callable[[System], Awaitable[None]]]] = [
                    ("noop", lambda s: _extend(samples[s.name].noop_ms_per_step, _per_step(
                        s, "noop", {"n": 100}, plan.noop_runs))),
                    ("big short", lambda s: _extend(samples[s.name].big_short, _per_step(
                        s, "big", {"n": 10, "size": BIG_SIZE}, plan.big_short_runs))),
                    ("big long", lambda s: _extend(samples[s.name].big_long, _per_step(
                        s, "big", {"n": plan.big_long_steps, "size": BIG_SIZE},
                        plan.big_long_runs))),
                    ("first", lambda s: _first(s, plan.first_runs, samples[s.name])),
                    ("batch", lambda s: _batch(s, meter, plan.batch, samples[s.name],
                                             min(plan.settle_s, 3.0))),
                ]
                for _, step in steps:
                    for system in order:
                        await step(system)
                # a system may go on working for a few seconds after its last run ended; idle
                # is what it burns once that is done
                await asyncio.sleep(plan.settle_s)
                await _idle(systems, meter, plan.idle_s, samples)
        finally:
            for system in systems:
                await system.close()
    return samples


async def _extend(into: list[float], values: Awaitable[list[float]]) -> None:
    into.extend(await values)


# -- the report ----------------------------------------------------------------------------------
def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def report(samples: dict[str, Samples], plan: Plan, versions: str) -> None:
    ours, restate, dbos = (samples[name] for name in SYSTEMS)
    rows: list[tuple[str, Callable[[Samples], float], int, str]] = [
        ("ms per no-op step, 100 steps", lambda s: median(s.noop_ms_per_step), 2, "lower"),
        (f"per-step time, {plan.big_long_steps} steps of 10 KB vs 10 steps", Samples.growth,
         2, "lower"),
        ("event -> first line of user code, p50 ms", lambda s: median(s.first_ms), 1, "lower"),
        (f"3-step runs per second, {plan.batch} at once", lambda s: median(s.runs_per_s), 0,
         "higher"),
        ("CPU ms per 3-step run, all processes", lambda s: median(s.cpu_ms_per_run), 1,
         "lower"),
        ("idle CPU, % of one core, all processes", lambda s: median(s.idle_pct), 2, "lower"),
    ]
    print(f"\nbench.peers: {machine()}\n{versions}\n"
          f"{plan.rounds} interleaved rounds; medians over all rounds\n")
    header = (f"{'workload':<50} {'ours':>8} {'Restate':>8} {'DBOS':>8} "
              f"{'ours/Restate':>13} {'DBOS/Restate':>13}")
    print(header)
    print("-" * len(header))
    for label, value, digits, _ in rows:
        o, r, d = value(ours), value(restate), value(dbos)
        suffix = "x" if "vs" in label else ""
        print(f"{label:<50} {_fmt(o, digits) + suffix:>8} {_fmt(r, digits) + suffix:>8} "
              f"{_fmt(d, digits) + suffix:>8} {o / r:>12.2f}x {d / r:>12.2f}x")

    print("\nspread over rounds (min .. max):")
    for name in SYSTEMS:
        s = samples[name]
        print(f"  {name:<8} ms/no-op step "
              f"{min(s.noop_ms_per_step):.2f}..{max(s.noop_ms_per_step):.2f}"
              f"   first line p90 {percentile(s.first_ms, 90):.1f} ms"
              f"   runs/s {min(s.runs_per_s):.0f}..{max(s.runs_per_s):.0f}"
              f"   CPU ms/run {min(s.cpu_ms_per_run):.1f}..{max(s.cpu_ms_per_run):.1f}"
              + (f"   event acknowledged p50 {median(s.ack_ms):.1f} ms" if s.ack_ms else ""))
    print("\nper-step ms of the 10 KB runs: "
          + "; ".join(f"{name} 10 steps {median(samples[name].big_short):.2f}, "
                      f"{plan.big_long_steps} steps {median(samples[name].big_long):.2f}"
                      for name in SYSTEMS))
    print("\nCPU ms per 3-step run by process (median), and this client's own:")
    for name in SYSTEMS:
        s = samples[name]
        parts = ", ".join(f"{proc} {median([x[proc] for x in s.cpu_split]):.2f}"
                          for proc in s.cpu_split[0])
        print(f"  {name:<8} {parts}; client {median(s.client_cpu_ms_per_run):.2f}")
    print("idle CPU by process, % of one core (median):")
    for name in SYSTEMS:
        s = samples[name]
        parts = ", ".join(f"{proc} {median([x[proc] for x in s.idle_split]):.2f}"
                          for proc in s.idle_split[0])
        print(f"  {name:<8} {parts}")
    busy = max(max(s.others_cores) for s in samples.values())
    print(f"\nother processes of the machine during the batches: up to {busy:.2f} cores "
          "(everything not started here, and the systems not being measured)")

    print("\nTargets (ratios to Restate in this run):")
    idle_executor = median([x["executor"] for x in ours.idle_split])
    checks = [
        ("per no-op step (100 steps) <= 0.6x Restate",
         median(ours.noop_ms_per_step) / median(restate.noop_ms_per_step), 0.6, "<="),
        (f"{plan.big_long_steps} x 10 KB vs 10 steps per-step ratio <= 1.2x", ours.growth(),
         1.2, "<="),
        ("event -> first line p50 <= 0.6x Restate",
         median(ours.first_ms) / median(restate.first_ms), 0.6, "<="),
        (f"3-step runs/s, {plan.batch} at once, one executor >= Restate's",
         median(ours.runs_per_s) / median(restate.runs_per_s), 1.0, ">="),
        ("CPU per run <= Restate's",
         median(ours.cpu_ms_per_run) / median(restate.cpu_ms_per_run), 1.0, "<="),
        ("idle executor CPU < 1% of a core", idle_executor, 1.0, "<"),
    ]
    for label, value, bound, op in checks:
        met = {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]
        unit = "%" if "idle" in label else "x"
        print(f"  {label:<58} {value:6.2f}{unit}  {'MET' if met else 'NOT MET'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 short rounds, 200 at once")
    parser.add_argument("--rounds", type=int, default=None, help="override the rounds")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    _check_imports()
    restate_server()  # install before the clock starts
    started_at = time.monotonic()
    ours, restate, dbos = Ours(), Restate(), Dbos()
    systems: list[System] = [ours, restate, dbos]
    with processes("bench-peers-") as (log_dir, started):
        for system in systems:
            print(f"starting {system.name}", flush=True)
            system.start(log_dir, started)
        pids = {f"{s.name}.{proc}": pid for s in systems for proc, pid in s.pids.items()}
        meter = TreeCpuMeter({**pids, "client": os.getpid()})
        samples = run(measure(systems, meter, plan))
    versions = (f"restate-server {restate.version.removeprefix('restate-server ')}, "
                f"restate-sdk {_dist_version('restate-sdk')}, hypercorn "
                f"{_dist_version('hypercorn')}; dbos {_dist_version('dbos')} (SQLite); "
                f"ours: redis appendfsync always, executor dev --poll-interval 5 --lease-seconds 20")
    report(samples, plan, versions)
    print(f"\n(total {time.monotonic() - started_at:.0f} s)")


if __name__ == "__main__":
    main()
