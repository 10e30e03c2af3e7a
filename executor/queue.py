"""The durable queue: items in a hash, due times in a zset, leases in another.

A worker leases due items (each lease has an expiry and a token), renews the lease while its
call is in flight, and releases it in the same script that records the call's outcome. Items
whose worker died are reaped back to ready once their lease expires. Idle workers block on a
wake list (BLPOP) that every enqueue pushes to, never on a polling sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import keys
from .scripts import Scripts

log = logging.getLogger("inngest_like.executor")


@dataclasses.dataclass(frozen=True)
class PauseTimeout:
    """A pause's deadline: resume the run as timed out if the pause is still there. The
    pause is named by its id and address (pause_index.PauseRef); `pause_key`, its hash's
    key, only in items written before addresses (read, never written)."""

    pause_id: str
    address: list[str] = dataclasses.field(default_factory=list)
    pause_key: str = ""


@dataclasses.dataclass(frozen=True)
class StartTimeout:
    """`timeouts.start`: cancel the run if its first call has not started by now."""

    after_ms: int


@dataclasses.dataclass(frozen=True)
class FinishTimeout:
    """`timeouts.finish`: cancel the run if it is still running now."""

    after_ms: int


@dataclasses.dataclass(frozen=True)
class GroupSleep:
    """A sleep inside a parallel group: memoize it when due."""

    name: str


@dataclasses.dataclass(frozen=True)
class EmitInvoke:
    """Send an invoke's event; stored with the caller's pause so a crash cannot lose it."""

    data: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ScanWait:
    """Offer a new wait the events stored since `since_ms` (Redis time) that it may have
    missed while its call was in flight; stored with the pause. The pause is named as in
    PauseTimeout."""

    pause_id: str
    event: str
    since_ms: int
    address: list[str] = dataclasses.field(default_factory=list)
    pause_key: str = ""


@dataclasses.dataclass(frozen=True)
class GroupPause:
    """A wait or invoke of a parallel group, started as if it had been reported alone:
    `spec` is the JSON text {"op": <the opcode>, "started": <ms>} (kept as text: Lua's cjson
    would rewrite numbers in the op's user data)."""

    spec: str


@dataclasses.dataclass(frozen=True)
class Intake:
    """What accepted events do to runs already there, stored with the events by ingest.lua:
    offer `events` (ids of stored events) to the pauses waiting for them, and cancel the
    `replaced` runs (a singleton in cancel mode). Redone whole if its taker dies: starting,
    resuming and cancelling are each exactly-once in their scripts."""

    events: list[str]
    replaced: list[str]
    # [event id, function id] of the runs the events start in other shards (the home
    # shards of functions with shared flow-control state), started right after the events
    starts: list[list[str]] = dataclasses.field(default_factory=list)


Payload = (PauseTimeout | StartTimeout | FinishTimeout | GroupSleep | EmitInvoke | ScanWait
           | GroupPause | Intake)

# item kind -> its payload type; "call" items (calls to the app) carry none
PAYLOADS: dict[str, type[Payload]] = {
    "pause-timeout": PauseTimeout, "timeout-start": StartTimeout,
    "timeout-finish": FinishTimeout, "sleep": GroupSleep, "emit-invoke": EmitInvoke,
    "scan-wait": ScanWait, "pause": GroupPause, "intake": Intake,
}


@dataclasses.dataclass
class QueueItem:
    """One thing to do for run `run_id` of `fn_id`. Kind "call" calls the app, targeting
    `step_id` ("step" = discovery); every other kind is handled without a call and carries
    a typed payload (see PAYLOADS). Only calls take concurrency slots (lease.lua); the
    others carry the run's slots in `ck` for the call that follows them.
    """

    id: str
    run_id: str
    fn_id: str
    step_id: str = "step"
    attempt: int = 0
    max_attempts: int = 5
    kind: str = "call"
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    ck: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # concurrency slots
    # hashed step id -> what that step declared (timeout, heartbeat; agent_options.py), for
    # the calls of a planned group; follow-up calls start without
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)
    # how long this call waited to be taken after it was due (set by lease.lua, never stored)
    queued_ms: int = 0
    # when a lease handed it out (ms; never stored): its wait is still to be counted to its
    # run (call_start.lua, read with the run's state); 0 once counted or when not leased
    leased_at: int = 0

    @classmethod
    def of(cls, payload: Payload, *, id: str, run_id: str, fn_id: str,
           max_attempts: int = 5) -> QueueItem:
        """A timer or follow-up item (no call, so no concurrency slot)."""
        kind = next(k for k, t in PAYLOADS.items() if isinstance(payload, t))
        body = dataclasses.asdict(payload)
        if not body.get("pause_key", True):
            del body["pause_key"]  # a field of items written before addresses only
        return cls(id=id, run_id=run_id, fn_id=fn_id, kind=kind, max_attempts=max_attempts,
                   payload=body)

    @property
    def timer(self) -> Payload:
        """The typed payload of a non-call item; KeyError/TypeError when it does not fit."""
        return PAYLOADS[self.kind](**self.payload)

    @classmethod
    def from_json(cls, raw: bytes | str) -> QueueItem:
        data = orjson.loads(raw)
        if not data.get("ck"):
            data["ck"] = []  # Lua's cjson writes an empty list as {}
        if not data.get("limits"):
            data["limits"] = {}  # and an empty object as {} or [] alike
        if not data.get("payload"):
            data["payload"] = _legacy_payload(data.get("kind", "call"), data.pop("ref", ""))
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body.pop("queued_ms")
        body.pop("leased_at")
        return body

    def template(self, **changes: Any) -> bytes:
        """The JSON of a follow-up call of this run (its id is assigned by the script)."""
        body = self.to_dict()
        body.pop("id")
        body.update({"kind": "call", "payload": {}, "limits": {}, **changes})
        return orjson.dumps(body)


def _legacy_payload(kind: str, ref: str) -> dict[str, Any]:
    """Items written before payloads were typed kept them in one string, `ref`: read them,
    so an upgrade strands no timer."""
    if not ref:
        return {}
    if kind == "pause-timeout":
        pause_key, _, pause_id = ref.rpartition("|")  # event names may hold '|'
        return {"pause_key": pause_key, "pause_id": pause_id}
    if kind in ("timeout-start", "timeout-finish"):
        return {"after_ms": int(ref)}
    if kind == "sleep":
        return {"name": ref}
    if kind == "pause":
        return {"spec": ref}
    spec = orjson.loads(ref)
    if kind == "emit-invoke":
        return {"data": spec["data"]}
    if kind == "scan-wait":
        return {"pause_key": spec["key"], "pause_id": spec["id"], "event": spec["event"],
                "since_ms": spec["since"]}
    return {}


def named_slots(items: list[QueueItem], shard: int) -> tuple[list[str], bytes | str]:
    """The keys of the concurrency slots the calls among `items` take, and their names (a
    JSON list, '' for none): what a script that takes or frees them is given
    (lib_slots.lua). Timers carry their run's slots for later calls but take none."""
    names: list[str] = []
    for item in items:
        if item.kind == "call":
            for entry in item.ck:
                name = entry.get("n") or entry["key"]
                if name not in names:
                    names.append(name)
    if not names:
        return [], ""
    return [k for name in names for k in keys.slot_keys(name, shard)], orjson.dumps(names)


def _readable(raws: list[bytes]) -> list[QueueItem]:
    """The items lease.lua left for a second round, but one whose JSON this process cannot
    read (it could never be leased: logged, left for the invariant sweep's report)."""
    out = []
    for raw in raws:
        try:
            out.append(QueueItem.from_json(raw))
        except Exception:
            log.error("a queue item cannot be read: %r", raw[:200])
    return out


class Queue:
    """The shards' queues, seen as one: leases are taken from every shard, a shard's share
    rotating so that a busy shard cannot starve another."""

    def __init__(self, redis: Redis, scripts: Scripts, *, cluster: bool = False) -> None:
        self.redis = redis
        self.scripts = scripts
        # on a cluster one BLPOP cannot name the wake lists of several slots
        self.cluster = cluster
        self._turn = 0  # the shard that gets the larger share of the next lease
        self._woken: asyncio.Event | None = None
        self._waiting: asyncio.Event | None = None  # set while `wait` blocks
        self._watchers: list[asyncio.Task[None]] = []

    async def lease(
        self, now_ms: int, lease_ms: int, limit: int
    ) -> tuple[list[QueueItem], str, int | None]:
        """Lease up to `limit` due items from every shard, under one token. Returns (items,
        token, next due time or None). Each shard is offered an equal share (the remainder
        rotating), all at once, and at least one item: a worker with fewer free slots than
        shards may get up to one item per shard (a few calls over its slots), rather than
        ask only some shards and leave the others' work waiting."""
        token = str(ULID())
        if limit <= 0:
            return [], token, None
        count = keys.shard_count()
        self._turn = (self._turn + 1) % count
        shares = [max(1, limit // count + (1 if (s - self._turn) % count < limit % count else 0))
                  for s in keys.shards()]
        expiry_ms = now_ms + lease_ms

        def call(pipe: Any, shard: int, share: int, needing: list[QueueItem]) -> None:
            q = keys.queue(shard)
            slot_keys, names = named_slots(needing, shard)
            runs = sorted({item.run_id for item in needing})
            self.scripts.queue_in(
                pipe, "lease",
                [q.ready, q.leased, q.leases, q.items, keys.concurrency_waiting_keys(shard),
                 *slot_keys, *map(keys.run, runs)],
                [now_ms, expiry_ms, token, share, names, orjson.dumps(runs) if runs else ""])

        # one pipeline over every shard (one round trip per node of a cluster); a shard
        # whose due calls take concurrency slots is asked again, naming their keys
        asked: dict[int, tuple[int, list[QueueItem]]] = {
            shard: (shares[shard], []) for shard in keys.shards()}
        items: list[QueueItem] = []
        dues: list[int] = []
        for round_ in (1, 2):
            plan = list(asked.items())

            def fill(pipe: Any, plan: list[tuple[int, tuple[int, list[QueueItem]]]] = plan,
                     ) -> None:
                for shard, (share, needing) in plan:
                    call(pipe, shard, share, needing)

            try:
                answers = await self.scripts.pipelined(self.redis, fill)
            except Exception:
                if round_ == 1:
                    raise
                # the first round's calls are leased: keep them; the rest are still due
                log.exception("leasing calls that take concurrency slots failed")
                dues.append(now_ms)
                break
            asked = {}
            for (shard, (share, _)), out in zip(plan, answers, strict=True):
                count = int(out[1])
                items += [QueueItem.from_json(raw) for raw in out[2:2 + count]]
                needing = _readable(out[2 + count:])
                if round_ == 2 or not needing or count >= share:
                    if int(out[0]) >= 0:
                        dues.append(int(out[0]))
                    continue
                asked[shard] = (share - count, needing)
            if not asked:
                break
        for item in items:
            item.leased_at = now_ms
        return items, token, min(dues) if dues else None

    async def renew(self, item: QueueItem, token: str, now_ms: int, expiry_ms: int) -> bool:
        """Extend a lease (and its concurrency slots); False when it is no longer ours,
        including when a late renewal finds its slot taken (renew.lua forfeits it)."""
        shard = keys.shard_of(item.id)
        q = keys.queue(shard)
        slot_keys, names = named_slots([item], shard)
        ok = await self.scripts(
            "renew", [q.leased, q.leases, q.items, q.ready, q.wake, *slot_keys],
            [item.id, token, expiry_ms, now_ms, names]
        )
        return bool(ok)

    async def reap(self, now_ms: int, limit: int = 1000) -> int:
        """Put back in ready the items of every shard whose lease expired."""
        def call(pipe: Any, shard: int, needing: list[QueueItem]) -> None:
            q = keys.queue(shard)
            slot_keys, names = named_slots(needing, shard)
            self.scripts.queue_in(pipe, "reap", [q.leased, q.leases, q.ready, q.wake, q.items,
                                                 *slot_keys], [now_ms, limit, names])

        # calls holding concurrency slots are reaped by a second call naming their keys
        asked: dict[int, list[QueueItem]] = {shard: [] for shard in keys.shards()}
        moved = 0
        for round_ in (1, 2):
            plan = list(asked.items())

            def fill(pipe: Any, plan: list[tuple[int, list[QueueItem]]] = plan) -> None:
                for shard, needing in plan:
                    call(pipe, shard, needing)

            answers = await self.scripts.pipelined(self.redis, fill)
            asked = {}
            for (shard, _), out in zip(plan, answers, strict=True):
                moved += int(out[0])
                if round_ == 1 and len(out) > 1:
                    asked[shard] = [QueueItem.from_json(raw) for raw in out[1:]]
            if not asked:
                break
        return moved

    async def wait(self, timeout_s: float) -> None:
        """Block until something is enqueued in any shard or `timeout_s` passes."""
        timeout_s = max(timeout_s, 0.001)
        if not self.cluster or keys.shard_count() == 1:
            await self.redis.blpop([keys.queue(s).wake for s in keys.shards()],
                                   timeout=timeout_s)
            return
        # a cluster: one watcher per shard blocks on its wake list while this process
        # waits (so a busy process takes no wake-up an idle one could use), and wakes it
        if self._woken is None:
            self._woken, self._waiting = asyncio.Event(), asyncio.Event()
            self._watchers = [asyncio.create_task(self._watch(s)) for s in keys.shards()]
        assert self._waiting is not None
        self._waiting.set()
        try:
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiting.clear()
        self._woken.clear()

    async def _watch(self, shard: int) -> None:
        wake = keys.queue(shard).wake
        assert self._woken is not None and self._waiting is not None
        while True:
            await self._waiting.wait()
            try:
                if await self.redis.blpop([wake], timeout=1) is not None:
                    self._woken.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failover: the queue's own retries report it
                await asyncio.sleep(0.5)

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
