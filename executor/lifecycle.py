"""What follows a run's end, queued in a durable outbox by the script that ends the run: its
end events (`inngest/function.finished` always, plus `.failed` or `.cancelled`), and the
removal of its pauses and cancel listeners, which that script cannot do (their hashes are
not in its KEYS: state.RunState.unlisten).

The events drive `on_failure` handlers and resume `step.invoke` callers. Both are done right
after the end, and any process's scheduler sweeps the outbox, so a crash in between loses
nothing. Event ids derive from the run id, so emitting twice stores and starts everything
once; removing the pauses twice removes nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from . import keys, pause_index, shards
from .events import FINISHED, IncomingEvent
from .ingest import Ingest, internal_event

log = logging.getLogger("inngest_like.executor")

FAILED = "inngest/function.failed"
CANCELLED = "inngest/function.cancelled"
_NO_END_EVENTS_FOR = {FINISHED, FAILED}  # their handlers' ends would loop


def end_events(fields: dict[bytes, bytes], now_ms: int) -> list[Any]:
    run_id = fields[b"run_id"].decode()
    status = fields.get(b"status", b"").decode()
    first = orjson.loads(fields[b"event"])
    if first.get("name") in _NO_END_EVENTS_FOR:
        return []
    output = orjson.loads(fields[b"output"]) if fields.get(b"output") else None
    data: dict[str, Any] = {
        "function_id": fields[b"function_id"].decode(),
        "run_id": run_id,
        "event": first,
        "events": orjson.loads(fields[b"events"]),
        "_inngest": {"status": status},
    }
    correlation = ((first.get("data") or {}).get("_inngest") or {}).get("correlation_id")
    if correlation:
        data["correlation_id"] = correlation
    if status == "Completed":
        data["result"] = output
    elif fields.get(b"error"):
        # the output is the SDK's error body as sent; the events keep the normalized error
        # ({error, name, message, stack}) that on_failure handlers and invokers expect
        data["error"] = orjson.loads(fields[b"error"])
    else:
        data["error"] = output
    events = [internal_event(FINISHED, data, f"{run_id}-finished", now_ms)]
    if status == "Failed":
        events.append(internal_event(FAILED, data, f"{run_id}-failed", now_ms, run_id))
    elif status == "Cancelled":
        events.append(internal_event(CANCELLED, data, f"{run_id}-cancelled", now_ms))
    return events


class Lifecycle:
    def __init__(self, redis: Redis, ingest: Ingest, clock: Callable[[], int]) -> None:
        self.redis = redis
        self.ingest = ingest
        self.clock = clock
        # set by the service (operations.py): the run's root span, its metrics
        self.on_ended: Callable[[dict[bytes, bytes]], None] = lambda fields: None

    async def run_ended(self, run_id: str) -> None:
        """What follows a run's end, queued in the outbox by the script that ended it: the
        removal of its pauses and cancel listeners, and its end events."""
        async with self.redis.pipeline(transaction=False) as pipe:
            # the run's own shard tells about every shard's pauses: a pause marks each
            # shard's path set of its name (pauses.mark_waited)
            shard = keys.shard_of(run_id)
            pipe.hgetall(keys.run(run_id))
            pipe.get(keys.REGISTRY_VERSION)
            pipe.hlen(keys.pauses(FINISHED, shard))
            pipe.smembers(keys.pause_paths(FINISHED, shard))
            pipe.smembers(keys.run_listeners(run_id))
            fields, version, unindexed, marks, listeners = await pipe.execute()
        if listeners and fields.get(b"status") != b"Running":
            # before the entry leaves the outbox: a crash before this is redone by the sweep
            await self.ingest.state.unlisten(run_id, listeners)
        if fields and fields.get(b"status") != b"Running":
            self.on_ended(fields)
            await self.ingest.registry.refresh(int(version or 0))
            paths = sorted(p.decode() for p in marks)
            waiting = unindexed or pause_index.UNINDEXED in paths
            indexed = [p for p in paths if p != pause_index.UNINDEXED]
            events = [e for e in end_events(fields, self.clock())
                      if e.wire["name"] != FINISHED or waiting or self._listened(e)
                      or (indexed and await self.ingest.pauses.in_buckets(e, indexed))]
            if events:
                await self.ingest.accept(events)
        await self.redis.zrem(keys.outbox(shard), run_id)

    def _listened(self, finished: IncomingEvent) -> bool:
        """`inngest/function.finished` ends every run, so it is stored only when something
        uses it: an invoking run waits for it (its correlation id), or a function is
        triggered by it (or a wait matches it, checked by the caller). `.failed` and
        `.cancelled` are rarer and always kept (alerts and the dashboard read them)."""
        if finished.wire["data"].get("correlation_id"):
            return True
        return any(fn.subscribes(FINISHED) for fn in self.ingest.registry.functions.values())

    async def sweep(self, older_than_ms: int = 10_000) -> int:
        """Emit end events of runs a crashed process left in the outboxes (entries younger
        than `older_than_ms` are still being emitted by the process that ended the run)."""
        found = await shards.each_shard(self.redis, lambda pipe, shard: pipe.zrangebyscore(
            keys.outbox(shard), "-inf", self.clock() - older_than_ms, start=0, num=100))
        run_ids: list[Any] = [raw for shard_ids in found for raw in shard_ids]
        for raw in run_ids:
            try:
                await self.run_ended(raw.decode())
            except Exception:
                log.exception("emitting the end events of run %s failed", raw)
        return len(run_ids)
