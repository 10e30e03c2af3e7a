"""Pauses at volume: what matching one event against many waiting runs costs.

10,000 runs (the executor in-process over a fake app, a real redis-server) each wait for
`bench/approved` with `async.data.id == event.data.id`, each on its own id, the pauses made
by the executor's own code path (the call answers WaitForEvent). Then events that each
match exactly one run are offered to the waiting runs one by one (`Pauses.match`, which
also resumes the run it matched), then as many events that match no run (the lookup
alone). Reported: the median cost of one event's match in ms, and that cost over one Redis
PING round trip measured in the same run (the floor: no matching can cost less than one
trip to Redis).

    python -m bench.pauses            # 10,000 waiting runs, about a minute
    python -m bench.pauses --quick    # 1,000 waiting runs
"""

from __future__ import annotations

import argparse
import hashlib
import random
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis

from executor.driver import Completed, Outcome
from executor.events import IncomingEvent
from tests.engine.harness import Call, Engine, ops
from tests.procs import RedisServer

from . import _common

NAME = "bench/approved"
WAIT = hashlib.sha1(b"approval").hexdigest()
CHUNK = 500  # start events per accept


def _answer(call: Call) -> Outcome:
    if WAIT in call.steps:
        return Completed("approved")
    return ops({"op": "WaitForEvent", "id": WAIT, "name": "approval",
                "opts": {"event": NAME, "timeout": "24h",
                         "if": "async.data.id == event.data.id"}})


async def _ping_ms(redis: Redis, n: int = 2000) -> float:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await redis.ping()
        samples.append((time.perf_counter() - start) * 1000)
    return _common.median(samples)


async def _measure(url: str, waiting: int,
                   events: int) -> tuple[float, float, float, float]:
    redis = Redis.from_url(url)
    engine = Engine(redis, _answer)
    await engine.sync({"id": "waiter", "triggers": [{"event": "bench/start"}]})
    now = engine.clock()
    start = time.perf_counter()
    for first in range(0, waiting, CHUNK):
        batch = [IncomingEvent(f"start-{i}", {"name": "bench/start", "data": {"id": f"o-{i}"},
                                              "id": "", "ts": now, "user": {}}, "")
                 for i in range(first, min(first + CHUNK, waiting))]
        await engine.executor.ingest.accept(batch)
        await engine.run_until_idle()
    setup_s = time.perf_counter() - start
    pauses = engine.executor.ingest.pauses
    ping = await _ping_ms(redis)
    order = random.Random(7).sample(range(waiting), events)
    samples = []
    for n, i in enumerate(order):
        event = IncomingEvent(f"approve-{n}", {"name": NAME, "data": {"id": f"o-{i}"},
                                               "id": "", "ts": now, "user": {}}, "")
        begin = time.perf_counter()
        await pauses.match([event])
        samples.append((time.perf_counter() - begin) * 1000)
    await engine.run_until_idle()
    misses = []  # events no run waits for: the lookup alone, no resume
    for n in range(events):
        event = IncomingEvent(f"stray-{n}", {"name": NAME, "data": {"id": f"x-{n}"},
                                             "id": "", "ts": now, "user": {}}, "")
        begin = time.perf_counter()
        await pauses.match([event])
        misses.append((time.perf_counter() - begin) * 1000)
    resumed = sum(1 for c in engine.driver.calls if WAIT in c.steps)
    assert resumed == events, f"{resumed} runs resumed, expected {events}"
    ping_after = await _ping_ms(redis)
    await engine.executor.driver.close()
    await redis.aclose()
    return setup_s, _common.median(samples), _common.median(misses), min(ping, ping_after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 waiting runs")
    parser.add_argument("--events", type=int, default=200, help="matching events to send")
    args = parser.parse_args()
    waiting = 1000 if args.quick else 10_000
    print(_common.machine())
    with _common.processes("bench-pauses-") as (log_dir, started):
        redis = RedisServer(Path(tempfile.mkdtemp(dir=log_dir)))
        started.append(redis)
        redis.start()
        setup_s, match_ms, miss_ms, ping_ms = _common.run(
            _measure(redis.url, waiting, args.events))
    print(f"{waiting} runs waiting on {NAME} (set up in {setup_s:.1f} s); "
          f"{args.events} events, each matching one run")
    print(f"  Redis PING round trip (floor): {ping_ms:.3f} ms")
    print(f"  matching cost per event:       {match_ms:.3f} ms = {match_ms / ping_ms:.1f}x "
          f"a round trip (the lookup, the evaluations and the run's resume)")
    print(f"  an event that matches no run:  {miss_ms:.3f} ms = {miss_ms / ping_ms:.1f}x "
          f"a round trip (the lookup alone)")


if __name__ == "__main__":
    main()
