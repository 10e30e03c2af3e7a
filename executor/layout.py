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


async def check(redis: Any, *, migrate: bool, shards: int | None = None) -> int:
    """Make sure the store is in the current layout: mark an empty or current one, rename a
    drained layout-1 store when `migrate`, refuse otherwise (LayoutError); then set the
    store's shard count (`configure_shards`). Returns how many keys were renamed."""
    moved = await _check_layout(redis, migrate=migrate)
    await configure_shards(redis, shards)
    return moved


async def configure_shards(redis: Any, wanted: int | None) -> int:
    """Build keys for the store's shard count: the one it was created with (a store written
    before shards existed has one), or `wanted` for a new store. A store cannot change its
    count (every run, event and queue item lives in the shard its id names, by that count):
    a different `wanted` is refused (LayoutError)."""
    if wanted is not None and not 1 <= wanted <= keys.MAX_SHARDS:
        raise LayoutError(f"--queue-shards must be between 1 and {keys.MAX_SHARDS}, "
                          f"not {wanted}")
    stored = await redis.get(keys.SHARDS_KEY)
    if stored is None:
        # a new store takes the count asked for; one with runs or events already has 1
        used = await redis.exists(keys.runs(0), keys.events(0), keys.FUNCTIONS)
        count = wanted or 1 if not used else 1
        if used and wanted not in (None, 1):
            raise LayoutError(_refusal(1, wanted))
        # NX: of two processes creating the store at once, the first one's count holds
        if not await redis.set(keys.SHARDS_KEY, str(count), nx=True):
            return await configure_shards(redis, wanted)
    else:
        count = int(stored)
        if wanted is not None and wanted != count:
            raise LayoutError(_refusal(count, wanted))
    keys.configure(count)
    return count


def _refusal(count: int, wanted: int) -> str:
    return (f"this store was created with --queue-shards {count}; it cannot change to "
            f"{wanted} (each run, event and queue item lives in the shard its id names by "
            f"that count). Start with --queue-shards {count}, or point --redis-url at a new "
            "store")


async def _check_layout(redis: Any, *, migrate: bool) -> int:
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
