"""Pauses: runs waiting for an event (`step.wait_for_event`), for an invoked function's end
(`step.invoke`), and cancel listeners (`cancelOn`). An accepted event is offered to the
pauses of its name; the first match resumes (or cancels) the run, exactly once, in
resume.lua / cancel.lua (whoever deletes the pause wins, however many processes matched).

A pause keeps its expression with the trigger's values written in, and is stored in the
bucket of the equality it needs (`pause_index`): an event reads the buckets of its own
values plus the pauses without such an equality, not every pause of its name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from . import expressions, keys, pause_index
from .events import FINISHED, IncomingEvent
from .pause_index import PauseRef
from .registry import CancelOn
from .state import RunState
from .step_record import StepRecord

# a wait's look-back reads at most this many events of its name (oldest first): a bound on
# the work one new wait can cause, whatever the event volume
MAX_LOOKBACK_EVENTS = 1000


def cancel_pause_id(run_id: str, index: int) -> str:
    """The id of a run's `index`th cancel listener (strand.lua knows it by `:cancel:`)."""
    return f"{run_id}:cancel:{index}"


def cancel_listener(run_id: str, fn_id: str, index: int, cancel: CancelOn,
                    trigger: IncomingEvent, now_ms: int) -> dict[str, str]:
    """The pause that cancels a new run when `cancel` matches (`cancelOn`), as the ingest
    script stores it: its hash key (its bucket when indexable), id, JSON and member in the
    run's listeners set (pause_index.PauseRef). The bucket's path was registered when the
    function was loaded (Registry.refresh)."""
    address, expr, copy, _ = pause_index.place(cancel.event, cancel.expression, trigger.wire)
    ref = pause_index.PauseRef(cancel_pause_id(run_id, index), address)
    pause: dict[str, Any] = {"id": ref.id, "run_id": run_id,
                             "fn_id": fn_id, "kind": "cancel", "expr": expr,
                             "event_id": trigger.internal_id, "created_at": now_ms,
                             "expires_at": now_ms + cancel.timeout_ms}
    if copy is not None:
        pause["event"] = copy  # not interpolated: evaluated against the trigger, as before
    return {"key": ref.key, "id": ref.id, "json": orjson.dumps(pause).decode(),
            "member": ref.member}


def cancel_refs(run_id: str, cancels: list[CancelOn], trigger: dict[str, Any]) -> list[PauseRef]:
    """The cancel listeners `cancel_listener` stored for a run started by `trigger` (a
    function's `cancelOn` as it is now: one changed since names pauses that are not there,
    and its run's end removes the real ones through the outbox)."""
    return [PauseRef(cancel_pause_id(run_id, i),
                     pause_index.place(cancel.event, cancel.expression, trigger)[0])
            for i, cancel in enumerate(cancels)]


def match_keys(event_name: str, shard: int) -> list[str]:
    """Keys of `shard` whose existence means a pause there may wait for an event of
    `event_name` (the ingest script writes an intake item for the event only then): its
    unindexed pauses, and its path set, which exists once any pause of the name was indexed
    (it is never emptied, so it errs on the side of looking); for a run's end event, the
    invoke pauses too."""
    found = [keys.pauses(event_name, shard), keys.pause_paths(event_name, shard)]
    if event_name == FINISHED:
        found.append(keys.pauses_by_correlation(shard))
    return found


async def mark_waited(redis: Redis, event_name: str, path: str | None) -> None:
    """With several shards, before a pause of `event_name` is stored in its run's shard:
    add its path (UNINDEXED for an unindexed pause) to every shard's path set of the name,
    which the ingest script of every shard looks at (`match_keys`). Before, not after: an
    event stored once the pause exists sees the mark; one stored earlier (while the call
    that reported the wait was in flight) is found by the wait's look-back."""
    if keys.shard_count() == 1:
        return  # the pause is in the one shard every event's script looks at
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.shards():
            pipe.sadd(keys.pause_paths(event_name, shard), path or pause_index.UNINDEXED)
        await pipe.execute()


def correlation_key(correlation: str) -> str:
    """The hash holding the invoke pause of `correlation` (`<caller run id>.<step id>`):
    the caller's shard's."""
    return keys.pauses_by_correlation(keys.shard_of(correlation))


class Canceller(Protocol):
    def __call__(self, run_id: str, message: str, unless_started: str = "",
                 event_id: str = "") -> Awaitable[bool]: ...


class Pauses:
    def __init__(self, redis: Redis, state: RunState, clock: Callable[[], int],
                 cancel: Canceller) -> None:
        self.redis = redis
        self.state = state
        self.clock = clock
        self.cancel = cancel

    async def match(self, events: list[IncomingEvent]) -> None:
        """Offer accepted events to the pauses waiting for their names, and end the invoke
        pauses their `inngest/function.finished` events answer."""
        names = sorted({e.wire["name"] for e in events})
        finished = {str(e.wire["data"]["correlation_id"]): e for e in events
                    if e.wire["name"] == FINISHED and isinstance(e.wire.get("data"), dict)
                    and e.wire["data"].get("correlation_id")}
        correlations = list(finished)
        # every shard holds pauses of its own runs: read each one's (one pipeline)
        places = [(shard, name) for shard in keys.shards() for name in names]
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, name in places:
                pipe.smembers(keys.pause_paths(name, shard))
                pipe.hgetall(keys.pauses(name, shard))
            for corr in correlations:
                pipe.hget(correlation_key(corr), corr)
            results = await pipe.execute()
        paths = {place: sorted(p.decode() for p in results[2 * i] if p.decode() != pause_index.UNINDEXED)
                 for i, place in enumerate(places)}
        unindexed = {place: results[2 * i + 1] for i, place in enumerate(places)}
        # the second trip reads, per indexed path, the one bucket of each event's value
        wanted = [[(address, keys.pause_hash(address, shard)) for shard in keys.shards()
                   for address in pause_index.bucket_addresses(
                       e.wire["name"], e.wire, paths[shard, e.wire["name"]])]
                  for e in events]
        bucket_keys = sorted({key for found in wanted for _, key in found})
        buckets: dict[str, Any] = {}
        if bucket_keys:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in bucket_keys:
                    pipe.hgetall(key)
                buckets = dict(zip(bucket_keys, await pipe.execute(), strict=True))
        for event, found in zip(events, wanted, strict=True):
            name = event.wire["name"]
            for address, waiting in [*((pause_index.unindexed(name), unindexed[s, name])
                                       for s in keys.shards()),
                                     *((address, buckets[key]) for address, key in found)]:
                for raw in waiting.values():
                    pause = orjson.loads(raw)
                    await self._offer(event, pause_index.PauseRef(pause["id"], address), pause)
        for corr, raw in zip(correlations, results[2 * len(places):], strict=True):
            if raw:
                await self._invoke_done(orjson.loads(raw), finished[corr])

    async def in_buckets(self, event: IncomingEvent, paths: list[str]) -> bool:
        """Does a bucket this event would read (one per path in `paths`, in every shard)
        hold a pause? (The pauses of its name that are not indexed are the caller's to
        count.)"""
        found = [key for shard in keys.shards()
                 for key in pause_index.buckets_of(event.wire["name"], event.wire, paths, shard)]
        if not found:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in found:  # EXISTS of several keys may not span shards
                pipe.exists(key)
            return any(await pipe.execute())

    async def _offer(self, event: IncomingEvent, ref: pause_index.PauseRef,
                     pause: dict[str, Any]) -> None:
        now = self.clock()
        if pause.get("expires_at", now + 1) < now:
            return
        if event.internal_id == pause.get("event_id"):
            return  # a run is never resumed or cancelled by its own trigger
        variables = {"event": pause.get("event") or {}, "async": event.wire}
        if not expressions.matches(pause.get("expr"), variables):
            return
        if pause["kind"] == "cancel":
            message = f"cancelled by event {event.wire['name']} ({event.internal_id})"
            if await self.cancel(pause["run_id"], message, event_id=event.internal_id):
                await self._linked(keys.event_cancelled, event.internal_id, pause["run_id"])
        elif pause["kind"] == "wait":
            if await self.state.resume(ref, pause, orjson.dumps(event.wire), now,
                                       StepRecord.of_pause(pause, "Completed", now,
                                                           matched=event.internal_id)) == 1:
                await self._linked(keys.event_resumed, event.internal_id, pause["run_id"])

    async def _linked(self, links: Callable[[str, int], str], event_id: str,
                      run_id: str) -> None:
        """The event page's links to the runs an event resumed or cancelled, in the run's
        shard (written once the script that did it answered: a crash in between loses a
        link, never a run)."""
        await self.redis.rpush(links(event_id, keys.shard_of(run_id)), run_id)  # type: ignore[misc]

    async def _invoke_done(self, pause: dict[str, Any], finished: IncomingEvent) -> None:
        data = finished.wire["data"]
        if "error" in data and data.get("error") is not None:
            memo: dict[str, Any] = {"error": data["error"]}
            status = "Failed"
        else:
            memo = {"data": data.get("result")}
            status = "Completed"
        now = self.clock()
        await self.state.resume(pause_index.PauseRef(pause["id"], pause_index.INVOKE), pause,
                                orjson.dumps(memo), now, StepRecord.of_pause(pause, status, now))

    async def scan_lookback(self, ref: pause_index.PauseRef, pause: dict[str, Any], name: str,
                            since_ms: int) -> bool:
        """Offer a new pause the events of its name stored since `since_ms` (Redis time: the
        wait's start, or earlier with `lookback`), oldest first, at most
        MAX_LOOKBACK_EVENTS of them. True if one resumed it."""
        # the oldest MAX_LOOKBACK_EVENTS of every shard's, merged by time
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in keys.shards():
                pipe.zrangebyscore(keys.events_by_name(name, shard), since_ms, "+inf",
                                   start=0, num=MAX_LOOKBACK_EVENTS, withscores=True)
            found = await pipe.execute()
        ids = [member.decode() for member, _ in sorted(
            (pair for pairs in found for pair in pairs), key=lambda p: (p[1], p[0]))
        ][:MAX_LOOKBACK_EVENTS]
        if not ids:
            return False
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in ids:  # one GET each: an MGET may not span shards
                pipe.get(keys.event(event_id))
            raws = await pipe.execute()
        for raw in raws:
            if not raw:
                continue
            stored = orjson.loads(raw)
            internal_id = stored.pop("internal_id", stored.get("id"))
            if internal_id == pause.get("event_id"):
                continue
            variables = {"event": pause.get("event") or {}, "async": stored}
            if expressions.matches(pause.get("expr"), variables):
                now = self.clock()
                done = await self.state.resume(
                    ref, pause, orjson.dumps(stored), now,
                    StepRecord.of_pause(pause, "Completed", now, matched=internal_id))
                if done == 1:
                    await self._linked(keys.event_resumed, str(internal_id), pause["run_id"])
                return done != 0
        return False
