"""The store's key layout, checked at start; stores written in an earlier layout renamed.

Layout 1 (before every key carried the `{s0}` hash tag, see keys.py) named keys `il:<rest>`,
with the queue's under `il:{q}:` and a run's under `il:run:{r:<id>}`. Some stored values
name keys too (a Running run's pauses and cancel listeners, its queue items' concurrency
slots), so only a drained store is renamed: no Running run, no queue item. A store still
running is refused with the reason, to be finished by the executors of the earlier version.
"""

from __future__ import annotations

from typing import Any

from . import keys

LEGACY = b"il:"
LEGACY_MARKERS = ("il:functions", "il:apps", "il:runs", "il:{q}:items")
# names of layout 1 that held other keys' names: caches rebuilt as work goes on
LEGACY_DROPPED = (b"il:conc-wait-keys",)


class LayoutError(Exception):
    """The store cannot be used as it is (the message says why and what to do)."""


def renamed(name: bytes) -> bytes | None:
    """The layout-2 name of a layout-1 key; None for a key that is not a layout-1 key."""
    if not name.startswith(LEGACY) or name.startswith(keys.PREFIX.encode() + b":"):
        return None
    rest = name[len(LEGACY):]
    if rest.startswith(b"{q}:"):
        rest = b"q:" + rest[len(b"{q}:"):]
    elif rest.startswith(b"run:{r:"):
        run_id, _, tail = rest[len(b"run:{r:"):].partition(b"}")
        rest = b"run:" + run_id + tail
    return keys.PREFIX.encode() + b":" + rest


async def _legacy(redis: Any) -> bool:
    return bool(await redis.exists(*LEGACY_MARKERS))


async def check(redis: Any, *, migrate: bool) -> int:
    """Make sure the store is in the current layout: mark an empty or current one, rename a
    drained layout-1 store when `migrate`, refuse otherwise (LayoutError). Returns how many
    keys were renamed."""
    if await redis.get(keys.LAYOUT_KEY) == keys.LAYOUT.encode() or not await _legacy(redis):
        await redis.set(keys.LAYOUT_KEY, keys.LAYOUT)
        return 0
    running = int(await redis.zcard("il:runs:running")) + int(await redis.hlen("il:{q}:items"))
    how = "stop the executors of the earlier version, then start one with --migrate"
    if running:
        raise LayoutError(
            f"this Redis holds a store of key layout 1 with {running} Running runs or queue "
            "items; let them finish (or cancel them) with the executors of the earlier "
            f"version, then {how}")
    if not migrate:
        raise LayoutError(f"this Redis holds a drained store of key layout 1: {how}")
    moved = 0
    async for name in redis.scan_iter(match="il:*", count=1000):
        if name in LEGACY_DROPPED:
            await redis.delete(name)
            continue
        target = renamed(name)
        if target is not None:
            await redis.rename(name, target)
            moved += 1
    await redis.set(keys.LAYOUT_KEY, keys.LAYOUT)
    return moved
