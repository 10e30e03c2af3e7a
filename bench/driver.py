"""The HTTP client of the hot path (calls and checkpoints): inngest_like._http, which the
executor and the SDK use, against aiohttp.ClientSession and httpx.AsyncClient.

    python -m bench.driver            # three rounds per client and scenario (about a minute)
    python -m bench.driver --quick    # one short round (under 30 s)

A real uvicorn process serves bench.apps:echo_app on loopback (a bare ASGI app answering a
small opcode JSON, so the clients' own costs show). Each client POSTs a ~2 KB JSON body
(the size of a small call request) sequentially, then 20-way and 50-way concurrently; the
clients alternate between rounds so that drift hits all. Each is set up as the executor
would: one long-lived client, no connection limit, keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import orjson

from inngest_like import _http
from tests.procs import App

from ._common import CpuMeter, machine, median, percentile, processes, run

Post = Callable[[], Awaitable[None]]


@dataclasses.dataclass
class Plan:
    rounds: int
    sequential: int  # requests per pass (at most)
    concurrent: int  # requests per pass and concurrency level (at most)
    budget_s: float  # a pass stops early after this long (httpx is slow under concurrency)
    levels: tuple[int, ...] = (20, 50)


FULL = Plan(rounds=2, sequential=1500, concurrent=4000, budget_s=2.5)
QUICK = Plan(rounds=1, sequential=400, concurrent=800, budget_s=0.8)


def call_body(size: int = 2048) -> bytes:
    """A call request of about `size` bytes: event, a few memos, ctx."""
    body: dict[str, Any] = {
        "event": {
            "name": "bench/noop",
            "data": {"n": 3, "pad": ""},
            "id": "01J0000000000000",
            "ts": 1_700_000_000_000,
        },
        "events": [],
        "steps": {f"{i:040x}": {"data": i} for i in range(3)},
        "ctx": {
            "run_id": "01J0000000000001",
            "env": "",
            "step_id": "step",
            "attempt": 0,
            "max_attempts": 4,
            "stack": {"stack": [f"{i:040x}" for i in range(3)], "current": 3},
            "disable_immediate_execution": False,
            "use_api": False,
            "qi_id": "q:1",
        },
        "version": 2,
        "use_api": False,
    }
    body["events"] = [body["event"]]
    missing = size - len(orjson.dumps(body))
    body["event"]["data"]["pad"] = "x" * max(missing // 2, 0)
    body["events"] = [body["event"]]
    return orjson.dumps(body)


HEADERS = {
    "Content-Type": "application/json",
    "X-Inngest-Req-Version": "2",
    "X-Run-ID": "01J0000000000001",
    "X-Inngest-Step-ID": "step",
}


class Client:
    """One long-lived client session and its POST."""

    name = ""

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def post(self, url: str, body: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class OursClient(Client):
    """inngest_like._http.Client, as executor/driver.py and the SDK's Batch use it."""

    name = "ours"

    def __init__(self) -> None:
        self.client = _http.Client()

    async def post(self, url: str, body: bytes) -> None:
        response = await self.client.post(url, body, HEADERS, 30)
        check(response.status, response.headers, response.body)

    async def close(self) -> None:
        await self.client.close()


class AiohttpClient(Client):
    name = "aiohttp"

    def __init__(self) -> None:  # as executor/driver.py set it up before inngest_like._http
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            skip_auto_headers=("User-Agent",),
        )

    async def post(self, url: str, body: bytes) -> None:
        async with self.session.post(url, data=body, headers=HEADERS) as response:
            raw = await response.read()
            got = {k.lower(): v for k, v in response.headers.items()}
            check(response.status, got, raw)

    async def close(self) -> None:
        await self.session.close()


class HttpxClient(Client):
    """Unlimited connections and keep-alive, as the aiohttp connector above."""

    name = "httpx"

    def __init__(self) -> None:
        self.client = httpx.AsyncClient(
            timeout=30,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )

    async def post(self, url: str, body: bytes) -> None:
        response = await self.client.post(url, content=body, headers=HEADERS)
        got = {k.lower(): v for k, v in response.headers.items()}
        check(response.status_code, got, response.content)

    async def close(self) -> None:
        await self.client.aclose()


class HttpxDefaultClient(HttpxClient):
    """httpx's default limits: 100 connections, 20 kept alive."""

    name = "httpx-dflt"

    def __init__(self) -> None:
        self.client = httpx.AsyncClient(timeout=30)


def check(status: int, headers: dict[str, str], body: bytes) -> None:
    if status != 200 or "x-inngest-sdk" not in headers or not body.startswith(b"[{"):
        raise RuntimeError(f"unexpected answer: HTTP {status} {body[:100]!r}")


@dataclasses.dataclass
class Result:
    scenario: str
    client: str
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def per_second(self) -> float:
        return self.requests / self.wall_s if self.wall_s else float("nan")


async def one_pass(
    client: Client,
    url: str,
    body: bytes,
    total: int,
    concurrency: int,
    budget_s: float,
    result: Result,
    meter: CpuMeter,
) -> None:
    """`total` POSTs (fewer if `budget_s` runs out) from `concurrency` workers sharing one
    client."""
    remaining = total
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            started = time.perf_counter()
            await client.post(url, body)
            latencies.append((time.perf_counter() - started) * 1000)

    meter.start()
    cpu_started = time.process_time()
    wall_started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s += time.perf_counter() - wall_started
    result.client_cpu_s += time.process_time() - cpu_started
    result.server_cpu_s += meter.stop()["server"]
    result.latencies_ms += latencies


CLIENTS: dict[str, type[Client]] = {
    "ours": OursClient,
    "aiohttp": AiohttpClient,
    "httpx": HttpxClient,
    "httpx-dflt": HttpxDefaultClient,
}


async def measure(plan: Plan, url: str, meter: CpuMeter) -> list[Result]:
    """Every pass gets a fresh client whose pool was warmed by `warm` concurrent POSTs, so
    each client holds as many idle keep-alive connections as the scenario needs. The last
    scenario is sequential again, but after a 50-way burst left 50 idle connections."""
    body = call_body()
    burst = max(plan.levels)
    scenarios = [("sequential", 1, 1, plan.sequential)]
    scenarios += [(f"{level}-way", level, level, plan.concurrent) for level in plan.levels]
    scenarios += [(f"seq, {burst} idle", 1, burst, plan.sequential)]
    results = {(s, c): Result(s, c) for s, _, _, _ in scenarios for c in CLIENTS}
    for round_no in range(plan.rounds):
        order = list(CLIENTS)[round_no % len(CLIENTS) :] + list(CLIENTS)[: round_no % len(CLIENTS)]
        for scenario, concurrency, warm, total in scenarios:
            for name in order:
                async with CLIENTS[name]() as client:
                    await asyncio.gather(*(client.post(url, body) for _ in range(warm)))
                    for _ in range(20):
                        await client.post(url, body)
                    await one_pass(
                        client,
                        url,
                        body,
                        total,
                        concurrency,
                        plan.budget_s,
                        results[(scenario, name)],
                        meter,
                    )
    return list(results.values())


def report(results: list[Result], body_size: int, rounds: int) -> None:
    print(f"\nbench.driver: {machine()}")
    print(
        f"POST of a {body_size}-byte JSON body to a bare ASGI app under uvicorn on loopback; "
        f"{rounds} round(s), clients rotating.\n"
        "  ours:       inngest_like._http.Client (executor/driver.py, the SDK's checkpoints)\n"
        "  aiohttp:    ClientSession, TCPConnector(limit=0)\n"
        "  httpx:      AsyncClient, Limits(max_connections=None, "
        "max_keepalive_connections=None)\n"
        "  httpx-dflt: AsyncClient with its default limits (100 connections, 20 kept alive)\n"
        "A fresh client per pass, its pool warmed to the scenario's concurrency; "
        "'seq, 50 idle' = sequential\nafter a 50-way burst left idle keep-alive connections "
        "in the pool. Client CPU = this process."
    )
    header = (
        f"{'scenario':<13} {'client':<10} {'requests':>8} {'median ms':>9} {'p95 ms':>8} "
        f"{'req/s':>7} {'client cpu us/req':>17} {'server cpu us/req':>17}"
    )
    print()
    print(header)
    print("-" * len(header))
    by_key = {(r.scenario, r.client): r for r in results}
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    for scenario in scenarios:
        for client in CLIENTS:
            r = by_key[(scenario, client)]
            print(
                f"{scenario:<13} {client:<10} {r.requests:>8} {median(r.latencies_ms):>9.3f} "
                f"{percentile(r.latencies_ms, 95):>8.3f} {r.per_second:>7.0f} "
                f"{r.client_cpu_s * 1e6 / r.requests:>17.0f} "
                f"{r.server_cpu_s * 1e6 / r.requests:>17.0f}"
            )
    print(
        "\nRatios to ours. The floor is ours' median latency in this same run; latency and "
        "CPU\nratios > 1 and req/s ratios < 1 mean that client is slower."
    )
    header = (
        f"{'scenario':<13} {'client':<10} {'floor ms':>8} {'latency':>8} {'req/s':>7} "
        f"{'client cpu/req':>14}"
    )
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        aio = by_key[(scenario, "ours")]
        for client in CLIENTS:
            if client == "ours":
                continue
            hx = by_key[(scenario, client)]
            print(
                f"{scenario:<13} {client:<10} {median(aio.latencies_ms):>8.3f} "
                f"{median(hx.latencies_ms) / median(aio.latencies_ms):>7.2f}x "
                f"{hx.per_second / aio.per_second:>6.2f}x "
                f"{(hx.client_cpu_s / hx.requests) / (aio.client_cpu_s / aio.requests):>13.2f}x"
            )


def bench_main(plan: Plan) -> None:
    with processes("bench-driver-") as (log_dir, started):
        server = App(log_dir, "bench.apps:echo_app", "http://127.0.0.1:9", name="echo")
        started.append(server)
        server.start()
        assert server.process
        pids = {"server": server.process.pid, "bench": os.getpid()}
        meter, overall = CpuMeter(pids), CpuMeter(pids)
        overall.start()
        started_at = time.monotonic()
        results = run(measure(plan, server.url, meter))
        others_cores = overall.stop()["others"] / (time.monotonic() - started_at)
    report(results, len(call_body()), plan.rounds)
    if others_cores > 0.25:
        print(
            f"\nWARNING: other processes used {others_cores:.2f} cores of CPU during the "
            "measurement; latencies and req/s are pessimistic. Rerun on a quiet machine."
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.driver",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one short round (under 30 s)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    bench_main(QUICK if args.quick else FULL)
    print(f"\n(total {time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
