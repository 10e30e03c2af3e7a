"""What one run costs Redis, for the README's retention text: runs of 3 small steps (with
their event) and runs of 20 steps that each return 1 KB, through the whole executor
in-process (fake app, injected clock) on a real redis-server. Per run: keys, the summed
`MEMORY USAGE` of every key, and the growth of `used_memory` (after `MEMORY PURGE`), each
measured against the store before those runs, indexes and statistics included.

    python -m bench.run_memory            # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import tempfile
import time
from typing import Any

from redis.asyncio import Redis

from executor.driver import Completed
from tests.engine.harness import Call, Engine, ops, step_run
from tests.procs import RedisServer


async def _footprint(redis: Redis) -> tuple[int, int, int]:
    await redis.execute_command("MEMORY", "PURGE")
    names = await redis.keys("*")
    summed = sum([int(await redis.memory_usage(n) or 0) for n in names])
    return len(names), summed, int((await redis.info("memory"))["used_memory"])


def _steps(count: int, size: int) -> Any:
    def answer(call: Call) -> Any:
        done = len(call.steps)
        if done < count:
            return ops(step_run(f"{done:040d}", "x" * size if size else {"step": done}))
        return Completed({"ok": True})
    return answer


def _event(i: int, text: bool) -> dict[str, Any]:
    """An order: numbers only, or with a customer and a sentence (a unique text value and
    words are each an index key: `executor/indexes.py`)."""
    if not text:
        return {"order": i, "amount": i * 3}
    return {"order": i, "customer": f"c{i % 50}", "note": f"order {i} to Lisbon by courier"}


async def _measure(redis: Redis, label: str, count: int, size: int, runs: int,
                   text: bool = True) -> None:
    await redis.flushdb()
    engine = Engine(redis, answer=_steps(count, size))
    engine.clock.now = int(time.time() * 1000)
    try:
        await engine.sync({"id": "f"})
        await engine.send({"order": 0, "note": "warm-up"})  # shared keys exist before
        await engine.run_until_idle()
        keys0, summed0, used0 = await _footprint(redis)
        for i in range(runs):
            await engine.send(_event(i + 1, text))
        await engine.run_until_idle()
        keys1, summed1, used1 = await _footprint(redis)
    finally:
        await engine.executor.driver.close()
    print(f"{label:<34} {(keys1 - keys0) / runs:6.1f} keys  "
          f"{(summed1 - summed0) / runs / 1024:7.2f} KB (MEMORY USAGE)  "
          f"{(used1 - used0) / runs / 1024:7.2f} KB (used_memory) per run, {runs} runs")


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(pathlib.Path(directory))
        server.start()
        redis = Redis.from_url(server.url)
        try:
            await _measure(redis, "3 steps, small outputs, numbers", 3, 0, runs, text=False)
            await _measure(redis, "3 steps, small outputs, with text", 3, 0, runs)
            await _measure(redis, "20 steps, 1 KB outputs", 20, 1024, max(1, runs // 4))
        finally:
            await redis.aclose()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    asyncio.run(main(parser.parse_args().runs))
