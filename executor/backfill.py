"""Index the runs and events a store held before the dashboard's indexes existed:

    python -m executor.backfill --redis-url redis://127.0.0.1:6379/0

Writes what the scripts write for new runs (`executor/indexes.py`): each run's status
index, its function x status index and its search entries (trigger event, and output or
error once it ended); each event's place among the user's events and its search entries.
Idempotent (every write is a ZADD), and safe while the executor runs: a run that ends
meanwhile is moved by the script that ends it. The per-minute statistics are not rebuilt
(older runs have no execution and queue times): they count from the upgrade on.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
from redis.asyncio import Redis

from . import indexes, keys

BATCH = 2000


async def backfill(redis: Redis, batch: int = BATCH) -> tuple[int, int]:
    """(runs indexed, events indexed), every shard's."""
    runs = events = 0
    for shard in keys.shards():
        runs += await _runs(redis, batch, shard)
        events += await _events(redis, batch, shard)
    return runs, events


async def _members(redis: Redis, index: str, start: int, batch: int) -> list[str]:
    found: Any = await redis.zrange(index, start, start + batch - 1)
    return [m.decode() for m in found]


async def _runs(redis: Redis, batch: int, shard: int) -> int:
    """A shard's runs, into that shard's indexes (where the scripts put a run's)."""
    done = 0
    while ids := await _members(redis, keys.runs(shard), done, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hmget(keys.run(run_id), ["function_id", "status", "started_at", "event",
                                              "output"])
            rows = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            for run_id, (fn, status, started, event, output) in zip(ids, rows, strict=True):
                if fn is None or status is None:
                    continue
                fn_id, state, at = fn.decode(), status.decode(), int(started or 0)
                if state != "Running":
                    pipe.zadd(keys.runs_by_status(state, shard), {run_id: at})
                pipe.zadd(keys.runs_of_function_status(fn_id, state, shard), {run_id: at})
                doc = indexes.run_document(orjson.loads(event) if event else {}, state,
                                           orjson.loads(output) if output else None)
                for key, score, member in indexes.entries(doc, indexes.RUNS, shard):
                    pipe.zadd(key, {member or run_id: float(score) if score else at})
            await pipe.execute()
        done += len(ids)
    return done


async def _events(redis: Redis, batch: int, shard: int) -> int:
    """A shard's events: the user's among them listed, and their search entries."""
    done = 0
    while True:
        found: Any = await redis.zrange(keys.events(shard), done, done + batch - 1,
                                        withscores=True)
        if not found:
            return done
        ids = [(m.decode(), int(s)) for m, s in found]
        raws = await redis.mget([keys.event(i) for i, _ in ids])  # one shard: one slot
        async with redis.pipeline(transaction=False) as pipe:
            for (event_id, at), raw in zip(ids, raws, strict=True):
                if not raw:
                    continue
                wire = orjson.loads(raw)
                if indexes.is_internal(wire.get("name")):
                    continue  # internal events are neither the user's nor searched
                pipe.zadd(keys.events_user(shard), {event_id: at})
                for key, score, member in indexes.entries(indexes.event_document(wire),
                                                        indexes.EVENTS, shard):
                    pipe.zadd(key, {member or event_id: float(score) if score else at})
            await pipe.execute()
        done += len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()

    async def run() -> None:
        redis = Redis.from_url(args.redis_url)
        try:
            runs, events = await backfill(redis)
            print(f"indexed {runs:,} runs and {events:,} events")
        finally:
            await redis.aclose()

    asyncio.run(run())


if __name__ == "__main__":
    main()
