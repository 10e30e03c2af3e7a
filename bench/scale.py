"""Throughput with more executor processes: 3-step runs per second, K started at once, with
1, 2 and 4 executors sharing one Redis, and the executors' CPU per step.

    python -m bench.scale                  # K = 600 per round, 3 rounds (about 2 minutes)
    python -m bench.scale --quick          # K = 200, 1 round
    python -m bench.scale --executors 1,2  # choose the process counts
    python -m bench.scale --cluster        # on a three-master Redis Cluster (a replica each)
    python -m bench.scale --cluster --shards 3   # the store cut into 3 shards, one a master

For each count E: a fresh redis-server (appendfsync always, as the tests'; or a fresh
three-master cluster with `--cluster`; the store cut into `--shards` shards), the bench app
(bench.apps:app, function `bench-three`) and E `python -m executor dev` processes on free
loopback ports. After a warm-up, each round sends K events at once, spread over the E
executors' APIs, and waits until every run has ended:

    runs/s          = K / (the last run's ended_at - the first request sent)
    executor CPU/step = CPU seconds of all E executor processes over the round / (3 K)

The floor, measured in the same run from this process, is one Redis PING round trip; the
ratio printed for each E is its runs/s over E = 1's (1.0x: no gain from more processes).
On a machine with fewer cores than processes the executors compete for CPU with the app
and Redis, which caps the gain; the machine line says how many cores there were.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import time
from collections.abc import Callable

import aiohttp
import orjson
from redis.asyncio import Redis

from executor import keys
from executor.redis_client import connect
from tests.procs import App, Executor, Proc, RedisCluster, free_port

from ._common import CpuMeter, machine, median, processes, run
from .steps import BenchRedis

FUNCTION = "bench-three"


class Deployment:
    """Redis, the app and E executors (the first syncs the app; all share the registry)."""

    def __init__(self, executors: int, cluster: bool, shards: int) -> None:
        self.count = executors
        self.cluster = cluster
        self.shards = shards
        self.executors: list[Executor] = []

    def start(self, started: list[Proc], log_dir: pathlib.Path) -> None:
        directory = log_dir / f"e{self.count}"
        directory.mkdir()
        self.redis: BenchRedis | RedisCluster = (
            RedisCluster(directory) if self.cluster else BenchRedis(directory, "always"))
        if isinstance(self.redis, RedisCluster):
            started.extend(self.redis.nodes)
        else:
            started.append(self.redis)
        self.redis.start()
        exec_port, app_port = free_port(), free_port()
        app = App(directory, "bench.apps:app", f"http://127.0.0.1:{exec_port}", port=app_port)
        started.append(app)
        app.start()
        self.app = app
        for i in range(self.count):
            ex = Executor(directory, self.redis.url, [app.url] if i == 0 else [],
                          port=exec_port if i == 0 else None, name=f"executor-{i}",
                          extra=["--poll-interval", "5", "--lease-seconds", "20",
                                 "--queue-shards", str(self.shards)])
            started.append(ex)
            ex.start()
            self.executors.append(ex)
        for ex in self.executors:
            ex.wait_synced(FUNCTION)

    def pids(self) -> dict[str, int]:
        out = {f"executor-{i}": ex.process.pid for i, ex in enumerate(self.executors)
               if ex.process}
        if self.app.process:
            out["app"] = self.app.process.pid
        nodes = self.redis.nodes if isinstance(self.redis, RedisCluster) else [self.redis]
        out.update({f"redis-{n.port}": n.process.pid for n in nodes if n.process})
        return out


async def _round(deployment: Deployment, http: aiohttp.ClientSession, redis: Redis, k: int
                 ) -> tuple[float, int]:
    """(runs/s, runs) of one burst of k events spread over the executors."""
    async def counts(*indexes: Callable[[int], str]) -> list[int]:
        async with redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                for shard in keys.shards():
                    pipe.zcard(index(shard))
            found = await pipe.execute()
        n = keys.shard_count()
        return [sum(found[i * n:(i + 1) * n]) for i in range(len(indexes))]

    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.shards():
            pipe.zcard(keys.runs(shard))
        bases = await pipe.execute()
    base = sum(bases)
    body = orjson.dumps({"name": "bench/three", "data": {}})
    urls = [f"{ex.url}/e/bench-key" for ex in deployment.executors]

    async def send(i: int) -> None:
        async with http.post(urls[i % len(urls)], data=body,
                             headers={"Content-Type": "application/json"}) as answer:
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {(await answer.read())[:200]!r}")

    sent = time.time()
    await asyncio.gather(*(send(i) for i in range(k)))
    while True:  # ZCARDs every 20 ms: done when all k runs exist and none is running
        await asyncio.sleep(0.02)
        total, running = await counts(keys.runs, keys.runs_running)
        if total >= base + k and running == 0:
            break
    async with redis.pipeline(transaction=False) as pipe:
        for shard, shard_base in zip(keys.shards(), bases, strict=True):
            pipe.zrange(keys.runs(shard), shard_base, -1)
        newest = [run_id for found in await pipe.execute() for run_id in found]
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in newest:
            pipe.hmget(keys.run(run_id.decode()), ["status", "ended_at"])
        rows = await pipe.execute()
    failed = [r for r in rows if r[0] != b"Completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs did not complete: {failed[:3]}")
    last = max(int(ended) for _, ended in rows) / 1000 + 0.0005
    return k / (last - sent), len(rows)


async def _ping_ms(redis: Redis, n: int = 500) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await redis.ping()
        times.append((time.perf_counter() - start) * 1000)
    return median(times)


async def measure(counts: list[int], k: int, rounds: int, cluster: bool, shards: int) -> None:
    keys.configure(shards)
    print(machine(), "| Redis Cluster, 3 masters + 3 replicas" if cluster else "| one Redis",
          f"| {shards} shard(s)")
    results: dict[int, tuple[list[float], list[float]]] = {}
    for count in counts:
        with processes(f"bench-scale-{count}-") as (log_dir, started):
            deployment = Deployment(count, cluster, shards)
            deployment.start(started, log_dir)
            redis = connect(deployment.redis.url, cluster=cluster)
            connector = aiohttp.TCPConnector(limit=200)
            async with aiohttp.ClientSession(connector=connector) as http:
                floor = await _ping_ms(redis)
                await _round(deployment, http, redis, min(k, 100))  # warm-up
                meter = CpuMeter(deployment.pids())
                rates, cpu = [], []
                for _ in range(rounds):
                    meter.start()
                    rate, done = await _round(deployment, http, redis, k)
                    used = meter.stop()
                    spent = sum(v for name, v in used.items() if name.startswith("executor"))
                    rates.append(rate)
                    cpu.append(spent * 1000 / (3 * done))
            await redis.aclose()
            results[count] = (rates, cpu)
            print(f"  {count} executor(s): {median(rates):7.1f} runs/s, executor CPU "
                  f"{median(cpu):.2f} ms/step (rounds: "
                  f"{', '.join(f'{r:.0f}' for r in rates)}); Redis PING {floor:.3f} ms")
    base = median(results[counts[0]][0])
    print(f"\n{'executors':>9} | {'runs/s':>7} | {'vs ' + str(counts[0]):>6} | "
          f"{'executor CPU/step':>17}")
    for count, (rates, cpu) in results.items():
        print(f"{count:>9} | {median(rates):7.1f} | {median(rates) / base:5.2f}x | "
              f"{median(cpu):14.2f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="K = 200, one round")
    parser.add_argument("--executors", default="1,2,4", help="process counts (default 1,2,4)")
    parser.add_argument("--runs", type=int, default=None, help="K, runs per round")
    parser.add_argument("--cluster", action="store_true", help="on a Redis Cluster")
    parser.add_argument("--shards", type=int, default=1,
                        help="--queue-shards of the store (default 1)")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.executors.split(",")]
    k = args.runs or (200 if args.quick else 600)
    run(measure(counts, k, 1 if args.quick else 3, args.cluster, args.shards))


if __name__ == "__main__":
    main()
