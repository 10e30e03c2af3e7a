"""The durable queue: items in a hash, due times in a zset, leases in another.

A worker leases due items (each lease has an expiry and a token), renews the lease while its
call is in flight, and releases it in the same script that records the call's outcome. Items
whose worker died are reaped back to ready once their lease expires. Idle workers block on a
wake list (BLPOP) that every enqueue pushes to, never on a polling sleep.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import keys
from .scripts import Scripts


@dataclasses.dataclass
class QueueItem:
    """One thing to do for run `run_id` of `fn_id`. Kind "call" calls the app, targeting
    `step_id` ("step" = discovery); the other kinds are handled without a call:
    "pause-timeout" (`ref` = "<pause hash key>|<pause id>"), "timeout-start",
    "timeout-finish", "sleep" (a sleep inside a parallel group), "pause" (start a wait or
    invoke of a parallel group: `ref` holds its opcode), and the follow-ups stored with a
    pause: "emit-invoke" (send the invoke's event) and "scan-wait" (offer a new wait the
    events that arrived while its call was in flight). Only calls take concurrency slots.
    """

    id: str
    run_id: str
    fn_id: str
    step_id: str = "step"
    attempt: int = 0
    max_attempts: int = 5
    kind: str = "call"
    ref: str = ""
    ck: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # concurrency slots

    @classmethod
    def from_json(cls, raw: bytes | str) -> QueueItem:
        data = orjson.loads(raw)
        if not data.get("ck"):
            data["ck"] = []  # Lua's cjson writes an empty list as {}
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def template(self, **changes: Any) -> bytes:
        """The JSON of a follow-up item of this run (its id is assigned by the script)."""
        body = self.to_dict()
        body.pop("id")
        body.update({"kind": "call", "ref": "", **changes})
        return orjson.dumps(body)


QUEUE_KEYS = [keys.QUEUE_ITEMS, keys.QUEUE_READY, keys.QUEUE_LEASED, keys.QUEUE_LEASES,
              keys.QUEUE_WAKE]


class Queue:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts

    async def lease(
        self, now_ms: int, lease_ms: int, limit: int
    ) -> tuple[list[QueueItem], str, int | None]:
        """Lease up to `limit` due items. Returns (items, token, next due time or None)."""
        token = str(ULID())
        out = await self.scripts(
            "lease",
            [keys.QUEUE_READY, keys.QUEUE_LEASED, keys.QUEUE_LEASES, keys.QUEUE_ITEMS],
            [now_ms, now_ms + lease_ms, token, limit, keys.RUN_PREFIX],
        )
        next_due = int(out[0]) if int(out[0]) >= 0 else None
        return [QueueItem.from_json(raw) for raw in out[1:]], token, next_due

    async def renew(self, item_id: str, token: str, expiry_ms: int) -> bool:
        ok = await self.scripts(
            "renew", [keys.QUEUE_LEASED, keys.QUEUE_LEASES, keys.QUEUE_ITEMS],
            [item_id, token, expiry_ms]
        )
        return bool(ok)

    async def reap(self, now_ms: int, limit: int = 1000) -> int:
        moved = await self.scripts(
            "reap",
            [keys.QUEUE_LEASED, keys.QUEUE_LEASES, keys.QUEUE_READY, keys.QUEUE_WAKE,
             keys.QUEUE_ITEMS],
            [now_ms, limit],
        )
        return int(moved)

    async def wait(self, timeout_s: float) -> None:
        """Block until something is enqueued or `timeout_s` passes."""
        await self.redis.blpop([keys.QUEUE_WAKE], timeout=max(timeout_s, 0.001))
