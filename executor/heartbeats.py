"""Heartbeats: a long step body says it is alive (`await inngest_like.heartbeat()`).

Each call to the app carries a call id (`X-Inngest-Like-Call`: its queue item's id and a
digest of its lease); the SDK posts beats for it to `POST /v1/runs/{run_id}/heartbeat`, which notes the
time in a short-lived key beside the queue. The worker holding the call of a step that
declared a heartbeat timeout reads it while the call runs, and keeps renewing the call's
lease only while beats arrive in time: a body that stops beating is ended and the attempt
retried (`call_watch.py`). Beats for a call that is no longer in flight are refused, so a
body that outlived its call can tell.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from inngest_like import wire

from . import keys
from .scripts import Scripts

CALL_HEADER = wire.CALL_HEADER


def call_id_of(item_id: str, lease_token: str) -> str:
    """A call's id: its queue item and a digest of its lease (a call made again after its
    worker died holds a new lease, so it is a new call; the token itself stays private).
    A checkpoint names its call by the same two (`qi_id`, `generation_id`)."""
    return f"{item_id}.{hashlib.sha256(lease_token.encode()).hexdigest()[:8]}"
BEAT_TTL_MS = 3_600_000  # a beat outlives any check of it; then it expires on its own


def item_of(call_id: str) -> str:
    """The queue item id inside a call id (`<run id>:<seq>.<lease digest>`)."""
    return call_id.rpartition(".")[0]


def call_id_ok(call_id: object, run_id: str) -> bool:
    return (isinstance(call_id, str) and len(call_id) <= 200
            and call_id.startswith(f"{run_id}:") and "." in call_id)


class Heartbeats:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts

    async def beat(self, call_id: str, now_ms: int) -> bool:
        """Note a beat; False when the call is not in flight (the body outlived it)."""
        item_id = item_of(call_id)
        out = await self.scripts("heartbeat", [keys.queue_of(item_id).leases,
                                               keys.call_beat(call_id)],
                                 [item_of(call_id), now_ms, BEAT_TTL_MS])
        return bool(out)

    async def last(self, call_id: str) -> int | None:
        """When the call's body last beat (ms), None if it never did."""
        raw = await self.redis.get(keys.call_beat(call_id))
        return int(raw) if raw else None
