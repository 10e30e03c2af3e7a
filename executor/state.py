"""Run state in Redis: what a call needs (events, memos, step order) and the writes that
record a call's outcome, each one atomic script guarded by the lease token."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis

from . import indexes, keys
from .events import FINISHED
from .heartbeats import BEAT_TTL_MS, call_id_of
from .pause_index import PauseRef
from .queue import PauseTimeout, QueueItem, named_slots
from .scripts import Scripts
from .step_record import StepRecord, encode

log = logging.getLogger("inngest_like.executor")

# Above this, memos + events are not sent with the call: the SDK fetches them (`use_api`).
USE_API_BYTES = 4 * 1024 * 1024
ATTEMPT_ERROR_CHARS = 4000  # each attempt's error is kept, its message and stack cut here


@dataclasses.dataclass
class Checkpointed:
    """What checkpoint.lua answers: `code` (steps newly saved; -1 the run is not running,
    -2 the call lost its lease), the call's beat before this one (ms), and the run's
    function id and stored trace context (for the route's metrics and spans)."""

    code: int
    last_beat: int | None
    fn_id: str
    trace: bytes | None

    @classmethod
    def of(cls, answer: Any) -> Checkpointed:
        """Read checkpoint.lua's answer."""
        code, beat, fn_id, trace = answer
        return cls(int(code), int(beat) if beat else None, bytes(fn_id).decode(),
                   bytes(trace) or None)


class Ended(NamedTuple):
    """What finish.lua did: `code` (see RunState.finish), and for code 4 the run's fields
    its end hooks read."""

    code: int
    fields: dict[bytes, bytes] | None = None


@dataclasses.dataclass
class CallState:
    run: dict[bytes, bytes]
    memos: dict[bytes, bytes]
    stack: list[bytes]
    registry_version: int
    redis_ms: int = 0  # Redis time when this state was read: the clock of event indexes

    @property
    def status(self) -> str:
        return self.run.get(b"status", b"").decode()

    @property
    def version(self) -> int:
        return int(self.run.get(b"version", b"-1"))


def _steps_json(state: CallState) -> bytes:
    return b"{" + b",".join(b'"' + h + b'":' + state.memos[h] for h in state.stack) + b"}"


def by_reference(state: CallState, steps: bytes | None = None) -> bool:
    """Whether a call leaves the run's events and memos out (`use_api`: the SDK reads them
    from the API): above USE_API_BYTES. `steps`: their JSON, when built already."""
    steps = _steps_json(state) if steps is None else steps
    return len(steps) + len(state.run[b"events"]) > USE_API_BYTES


def call_body(item: QueueItem, state: CallState, *, plan_only: bool = False) -> bytes:
    """The call request (protocol §4), assembled from stored JSON without re-encoding memos,
    so the n-th step costs a copy of the memos, not a parse and a dump of them. `plan_only`:
    the SDK runs no step.run but reports it planned (an eager first call, Worker.eager)."""
    events = state.run[b"events"]
    steps = _steps_json(state)
    use_api = by_reference(state, steps)
    if use_api:
        events, steps = b"[]", b"{}"
    ctx = {
        "run_id": item.run_id,
        # a non-empty fn_id lets JS v4 SDKs checkpoint (POST /v1/checkpoint/{run}/async)
        "fn_id": item.fn_id,
        "env": "",
        "step_id": item.step_id,
        "attempt": item.attempt,
        "max_attempts": item.max_attempts,
        "stack": {"stack": [h.decode() for h in state.stack], "current": len(state.stack)},
        "disable_immediate_execution": plan_only or state.run.get(b"disable_immediate") == b"1",
        "use_api": use_api,
        "qi_id": item.id,
    }
    return b"".join(
        (
            b'{"event":',
            state.run[b"event"],
            b',"events":',
            events,
            b',"steps":',
            steps,
            b',"ctx":',
            orjson.dumps(ctx),
            b',"version":',
            str(state.version).encode(),
            b',"use_api":',
            b"true" if use_api else b"false",
            b"}",
        )
    )


def _short_error(error: Any) -> Any:
    """An attempt's error as kept in its step record: the fields people read, bounded."""
    if not isinstance(error, dict):
        return str(error)[:ATTEMPT_ERROR_CHARS] if error is not None else None
    out = {}
    for field in ("name", "message", "error", "stack", "code", "status"):
        value = error.get(field)
        if value is not None:
            out[field] = value[:ATTEMPT_ERROR_CHARS] if isinstance(value, str) else value
    return out


class RunState:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
        # item id -> (start, end) of the call whose outcome is being recorded: noted by the
        # worker, taken by the script call that records the outcome (execution time, and
        # the attempt in the step's record)
        self.calls: dict[str, tuple[int, int]] = {}

    def note_call(self, item_id: str, start_ms: int, end_ms: int) -> None:
        self.calls[item_id] = (start_ms, end_ms)

    def _take_call(self, item: QueueItem, record: StepRecord | None) -> int:
        """The ms the item's call took ('' when it made none), and the attempt it was added
        to `record` (`try`: number, start, end, queue wait, status, error)."""
        call = self.calls.pop(item.id, None)
        if call is None:
            return 0
        start, end = call
        if record is not None and record.status in ("Completed", "Failed", "Retrying"):
            attempt: dict[str, Any] = {"n": item.attempt + 1, "start": start, "end": end,
                                       "queued_ms": item.queued_ms, "status": record.status}
            if record.extra.get("error") is not None:
                attempt["error"] = _short_error(record.extra["error"])
            if record.extra.get("retry_at"):
                attempt["retry_at"] = record.extra["retry_at"]
            record.extra["try"] = attempt
            record.extra["max_attempts"] = item.max_attempts
            if record.started_at is None or start < record.started_at:
                record.started_at = start
        return max(0, end - start)

    def _queue_load(self, pipe: Any, run_id: str, item: QueueItem | None = None) -> None:
        # the order before the memos: a memo is saved before it is listed, so whatever a
        # concurrent script adds in between, every listed step has its memo
        pipe.hgetall(keys.run(run_id))
        pipe.lrange(keys.run_stack(run_id), 0, -1)
        pipe.hgetall(keys.run_memos(run_id))
        pipe.get(keys.REGISTRY_VERSION)
        if item is not None and item.kind == "call" and item.leased_at:
            # a call a lease handed out starts: its queue wait goes to its run
            self.scripts.queue_in(pipe, "call_start", [keys.run(run_id)],
                                  [item.queued_ms, "1" if item.id.endswith(":1") else "",
                                   item.leased_at])
        else:
            self.scripts.queue_in(pipe, "clock", [keys.run(run_id)], [])

    @staticmethod
    def _state(results: list[Any], item: QueueItem | None = None) -> CallState | None:
        run, stack, memos, version, clock = results
        if isinstance(clock, list):  # call_start.lua: the clock and the wait it counted
            clock, waited = clock
            if item is not None:
                item.queued_ms, item.leased_at = int(waited), 0  # counted once
        if not run:
            return None
        return CallState(run, memos, stack, int(version or 0), int(clock))

    async def load(self, run_id: str, item: QueueItem | None = None) -> CallState | None:
        return (await self.load_many([run_id], [item]))[0]

    async def load_many(self, run_ids: list[str],
                        items: Sequence[QueueItem | None] | None = None,
                        ) -> list[CallState | None]:
        """The states of several runs in one round trip (the calls one lease handed out:
        `items`, whose queue waits are counted to their runs on the way)."""
        called = items or [None] * len(run_ids)

        def fill(pipe: Any) -> None:
            for run_id, item in zip(run_ids, called, strict=True):
                self._queue_load(pipe, run_id, item)

        results = await self.scripts.pipelined(self.redis, fill)
        return [self._state(results[5 * i:5 * i + 5], item) for i, item in enumerate(called)]

    async def complete(
        self,
        item: QueueItem,
        token: str,
        now_ms: int,
        *,
        step_hash: str = "",
        memo: bytes = b"",
        record: StepRecord | None = None,
        next_due: int = -1,
        next_template: bytes = b"{}",
        lease_expiry: int = 0,
        max_idle_calls: int = 0,
    ) -> tuple[int, QueueItem | None, CallState | None]:
        """Save a memo and schedule the next call in one script. When the next call is due
        now and `lease_expiry` is set, it comes straight back leased to us, with its state
        read in the same round trip. Code 4: the run made no progress in more than
        `max_idle_calls` calls in a row (nothing written)."""
        call_ms = self._take_call(item, record)
        slot_keys, names = named_slots([item], keys.shard_of(item.id))
        args = [item.id, token, now_ms, step_hash, memo, encode(record), next_due,
                next_template, lease_expiry, "" if item.step_id == "step" else item.step_id,
                max_idle_calls, call_ms, names]

        def fill(pipe: Any) -> None:
            self.scripts.queue_in(
                pipe, "complete",
                [*keys.queue_of(item.id).all(), *keys.run_keys(item.run_id), *slot_keys], args)
            self._queue_load(pipe, item.run_id)

        results = await self.scripts.pipelined(self.redis, fill)
        out = results[0]
        code = int(out[0])
        if code == 0 or len(out) < 2:
            return code, None, None
        return code, QueueItem.from_json(out[1]), self._state(results[1:])

    async def plan(self, item: QueueItem, token: str, now_ms: int,
                   planned: list[tuple[str, str, int, str]], race: bool = False) -> int:
        """One item per planned step (hash, kind "call" or "sleep", due, name); the next discovery
        waits until all have finished (or each one, racing)."""
        slot_keys, names = named_slots([item], keys.shard_of(item.id))
        args: list[Any] = [item.id, token, now_ms,
                           item.template(attempt=0, limits=item.limits), "1" if race else "",
                           self._take_call(item, None), names]
        for hashed, kind, due, name in planned:
            args += [hashed, kind, due, name]
        return int(
            await self.scripts(
                "plan", [*keys.queue_of(item.id).all(), keys.run(item.run_id),
                         keys.run_pending(item.run_id), *slot_keys], args
            )
        )

    async def retry(
        self,
        item: QueueItem,
        token: str,
        due_ms: int,
        last_error: str,
        record: StepRecord | None = None,
    ) -> int:
        """Put the item back for its next attempt: 1 rescheduled, 0 lease lost, 3 the run
        has ended (the item is dropped)."""
        again = dataclasses.replace(item, attempt=item.attempt + 1)
        call_ms = self._take_call(item, record)
        slot_keys, names = named_slots([item], keys.shard_of(item.id))
        ok = await self.scripts(
            "retry",
            [*keys.queue_of(item.id).all(), keys.run(item.run_id), keys.run_steps(item.run_id),
             *slot_keys],
            [item.id, token, due_ms, orjson.dumps(again.to_dict()), last_error,
             encode(record), call_ms, names],
        )
        return int(ok)

    async def finish(
        self,
        item: QueueItem,
        token: str,
        now_ms: int,
        status: str,
        output: Any = None,
        record: StepRecord | None = None,
        *,
        event_error: Any = None,
        unheard: int | None = None,
        listeners: list[PauseRef] | None = None,
        steps: list[tuple[str, bytes, StepRecord]] | None = None,
    ) -> Ended:
        """End the run with `status` and drop the item; code 1 ended, 2 the run had ended
        already, 0 lease lost, 4 ended with no end events to emit (`fields`: what its
        metrics and root span need). A failed run's end events carry `event_error` when
        given (the normalized error), else the output (the SDK's error body as sent).
        `unheard`: no function listens for a run's end as of this registry version (a
        completed run nothing waits for then skips the outbox, finish.lua). `listeners`:
        pauses of the run the caller knows of (its cancel listeners), removed with its end
        (others are removed after it, through the outbox). `steps`: (hashed id, memo,
        record) of steps the call ran, saved with the end (`[StepRun..., RunComplete]`)."""
        call_ms = self._take_call(item, record)
        tail_keys, tail_args = (indexes.end_plan(item.run_id, item.fn_id, status, now_ms,
                                                 output) if status else ([], []))
        shard = keys.shard_of(item.id)
        q = keys.queue(shard)
        # an item of no run (an intake) only drops itself; its run's places are then its
        # shard's (unread) so that every key is in one slot
        run_id = item.run_id or item.id
        slot_keys, slot_names = named_slots([item], shard)
        out = await self.scripts(
            "finish",
            [q.items, q.leased, q.leases, keys.run(run_id), keys.run_steps(run_id),
             keys.run_listeners(run_id), keys.outbox(shard), q.ready, q.wake,
             keys.runs_running(shard), keys.pauses(FINISHED, shard),
             keys.pause_paths(FINISHED, shard), keys.registry_version(shard),
             keys.singletons(shard), keys.run_memos(run_id), keys.run_stack(run_id),
             *slot_keys, *(ref.key for ref in listeners or ()),
             *tail_keys],
            [item.id, token, now_ms, status, orjson.dumps(output), encode(record),
             b"" if event_error is None else orjson.dumps(event_error), call_ms,
             "" if unheard is None else "1", "" if unheard is None else str(unheard),
             slot_names,
             orjson.dumps([[ref.id, ref.member] for ref in listeners]) if listeners else "",
             orjson.dumps([[hashed, memo.decode(), record.to_json().decode()]
                           for hashed, memo, record in steps]) if steps else "",
             *tail_args],
        )
        code = int(out[0])
        if code != 4:
            return Ended(code)
        names = (b"run_id", b"function_id", b"started_at", b"cost_usd", b"input_tokens",
                 b"output_tokens", b"trace")
        fields = {k: v for k, v in zip(names, out[1:], strict=True) if v is not None}
        fields.update({b"status": status.encode(), b"ended_at": str(now_ms).encode()})
        return Ended(code, fields)

    async def drop(self, item: QueueItem, token: str, now_ms: int) -> bool:
        """Remove a leased item whose work is done (a timer that fired, an item of a run that
        ended) without touching the run. False when the lease was lost."""
        return (await self.finish(item, token, now_ms, "")).code != 0

    async def pause(
        self, item: QueueItem, token: str, now_ms: int, *, ref: PauseRef,
        pause: dict[str, Any], timeout_due: int, record: StepRecord,
        follow_up: QueueItem | None = None, indexed: tuple[str, str] | None = None,
    ) -> int:
        """Park the run on the pause `ref` names (its id is `pause["id"]`) with a timeout
        item; 1 waiting, 0 lease lost, 3 ended. `indexed`: (the path set of the pause's
        event name, the path its bucket is on), added with the pause so that no event can
        miss the bucket."""
        timer = QueueItem.of(PauseTimeout(ref.id, list(ref.address), ref.legacy_key),
                             id=f"{item.run_id}:t:{ref.id}", run_id=item.run_id,
                             fn_id=item.fn_id, max_attempts=item.max_attempts)
        pause = {**pause, "timeout_item": timer.id, "ck": item.ck}
        slot_keys, names = named_slots([item], keys.shard_of(item.id))
        return int(
            await self.scripts(
                "pause",
                [*keys.queue_of(item.id).all(), keys.run(item.run_id),
                 keys.run_steps(item.run_id), ref.key,
                 keys.run_listeners(item.run_id), *([indexed[0]] if indexed else []),
                 *slot_keys],
                [item.id, token, now_ms, ref.id, orjson.dumps(pause), timer.id,
                 orjson.dumps(timer.to_dict()), timeout_due, record.to_json(),
                 follow_up.id if follow_up else "",
                 orjson.dumps(follow_up.to_dict()) if follow_up else b"",
                 self._take_call(item, None), indexed[1] if indexed else "", ref.member,
                 names],
            )
        )

    async def resume(
        self, ref: PauseRef, pause: dict[str, Any], memo: bytes, now_ms: int,
        record: StepRecord,
    ) -> int:
        """Resume a paused run once; 1 resumed, 0 someone else consumed the pause, 2 ended."""
        run_id = pause["run_id"]
        template = QueueItem(id="", run_id=run_id, fn_id=pause["fn_id"],
                             max_attempts=pause.get("max_attempts", 5),
                             ck=pause.get("ck") or []).template()
        return int(
            await self.scripts(
                "resume",
                [*keys.queue_of(run_id).all(), *keys.run_keys(run_id)[:4], ref.key,
                 keys.run_listeners(run_id), keys.run_pending(run_id)],
                [ref.id, pause["step"], memo, now_ms, pause.get("timeout_item", ""),
                 record.to_json(), template, ref.member, ref.legacy_member],
            )
        )

    async def unlisten(self, run_id: str, members: set[Any] | None = None) -> int:
        """Remove an ended run's pauses and cancel listeners, named by its listeners set
        (`members`: as read already, else read here): the scripts that end a run leave them,
        as they cannot name their hashes in KEYS, and queue the run in the outbox, whose
        processing calls this (lifecycle.py; a crash before it is redone by the outbox
        sweep). Returns how many were removed; -1 the run is still running (nothing
        written)."""
        if members is None:
            members = await self.redis.smembers(keys.run_listeners(run_id))  # type: ignore[misc]
        if not members:
            return 0
        named: list[tuple[str, str, Any]] = []
        for member in sorted(members):
            try:
                ref = PauseRef.of_member(member)
                named.append((ref.key, ref.id, member))
            except (ValueError, TypeError):
                # no writer makes one; skipped, so that it cannot hold back the run's end
                # events (the outbox's processing would fail on it forever)
                log.error("run %s: unreadable listener %r", run_id, member)
        if not named:
            return 0
        return int(
            await self.scripts(
                "unlisten",
                [keys.run(run_id), keys.run_listeners(run_id), *(key for key, _, _ in named)],
                [part for _, pause_id, member in named for part in (pause_id, member)],
            )
        )

    async def checkpoint(self, run_id: str, now_ms: int,
                         steps: list[tuple[str, bytes, StepRecord]], *,
                         item_id: str = "", generation: str = "") -> Checkpointed:
        """Save checkpointed steps (hash, memo, record) and, for a named call (`item_id`,
        `generation`), check it holds its lease and note its beat: one round trip
        (checkpoint.lua)."""
        return Checkpointed.of(await self.scripts("checkpoint", *_checkpoint_call(
            run_id, now_ms, steps, item_id, generation)))

    async def checkpoint_many(
        self, calls: list[tuple[str, list[tuple[str, bytes, StepRecord]], str, str]],
        now_ms: int,
    ) -> list[Checkpointed]:
        """`checkpoint` for several calls (run id, steps, item id, generation): one pipeline,
        one round trip per node."""
        if len(calls) == 1:
            run_id, steps, item_id, generation = calls[0]
            return [await self.checkpoint(run_id, now_ms, steps, item_id=item_id,
                                          generation=generation)]

        def fill(pipe: Any) -> None:
            for run_id, steps, item_id, generation in calls:
                self.scripts.queue_in(pipe, "checkpoint", *_checkpoint_call(
                    run_id, now_ms, steps, item_id, generation))

        out = await self.scripts.pipelined(self.redis, fill) if calls else []
        return [Checkpointed.of(answer) for answer in out]

    async def statuses(self, run_ids: list[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(keys.run(run_id), "status")
            found = await pipe.execute()
        return [s.decode() for s in found if s]

    async def cancel(self, run_id: str, now_ms: int, reason: dict[str, Any],
                     unless_started: str = "") -> int:
        """Cancel a running run: 1 cancelled, 0 it was not running, 4 `unless_started` (the
        id of its first item) was leased or is gone, so it started: not cancelled."""
        tail_keys, tail_args = await self._end_plan(run_id, "Cancelled", now_ms, reason)
        shard, q = keys.shard_of(run_id), keys.queue_of(run_id)
        return int(
            await self.scripts(
                "cancel",
                [keys.run(run_id), keys.outbox(shard), keys.runs_running(shard), q.items,
                 q.leases, keys.singletons(shard), *tail_keys],
                [now_ms, orjson.dumps(reason), unless_started, *tail_args],
            )
        )

    async def _end_plan(self, run_id: str, status: str, now_ms: int,
                        output: Any) -> tuple[list[str], list[str]]:
        """The index tail of a script that ends a run known by its id alone (a run's function
        never changes, so reading it first is safe)."""
        fn: Any = await self.redis.hget(keys.run(run_id), "function_id")
        if fn is None:
            return [], []
        return indexes.end_plan(run_id, fn.decode(), status, now_ms, output)

    async def fail_if_stranded(self, run_id: str, now_ms: int, reason: dict[str, Any]) -> int:
        """The invariant sweep's check: 1 failed (no queue item and no pause), 0 fine, 2 not
        running."""
        tail_keys, tail_args = await self._end_plan(run_id, "Failed", now_ms, reason)
        return int(
            await self.scripts(
                "strand",
                [keys.queue_of(run_id).items, keys.run(run_id), keys.run_listeners(run_id),
                 keys.outbox(keys.shard_of(run_id)), keys.runs_running(keys.shard_of(run_id)),
                 keys.singletons(keys.shard_of(run_id)), *tail_keys],
                [run_id, now_ms, orjson.dumps(reason), *tail_args],
            )
        )

    async def set_version(self, run_id: str, version: int) -> None:
        await self.redis.hset(keys.run(run_id), "version", str(version))


def _checkpoint_call(run_id: str, now_ms: int, steps: list[tuple[str, bytes, StepRecord]],
                     item_id: str, generation: str) -> tuple[list[str], list[Any]]:
    """checkpoint.lua's KEYS and ARGV."""
    args: list[Any] = [now_ms, item_id, generation, BEAT_TTL_MS]
    for hashed, memo, record in steps:
        args += [hashed, memo, record.to_json()]
    run_keys = [keys.run(run_id), keys.run_memos(run_id), keys.run_stack(run_id),
                keys.run_steps(run_id), keys.queue_of(run_id).leases]
    if item_id and generation:  # a named call: its beat key too
        run_keys.append(keys.call_beat(call_id_of(item_id, generation)))
    return run_keys, args
