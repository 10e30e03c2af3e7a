"""The store's key layout: an empty store is marked current, a drained store of layout 1 is
renamed key by key (only with `migrate`), and a layout-1 store still running is refused."""

from __future__ import annotations

import fakeredis
import pytest

from executor import keys, layout


def test_layout_1_names_map_to_the_current_ones() -> None:
    p = keys.PREFIX.encode()
    assert layout.renamed(b"il:{q}:items") == p + b":q:items"
    assert layout.renamed(b"il:run:{r:01ABC}") == p + b":run:01ABC"
    assert layout.renamed(b"il:run:{r:01ABC}:memos") == p + b":run:01ABC:memos"
    assert layout.renamed(b"il:event:E1:runs") == p + b":event:E1:runs"
    assert layout.renamed(b"il:pauses:a{b}c") == p + b":pauses:a{b}c"
    assert layout.renamed(p + b":runs") is None  # current already
    assert layout.renamed(b"other:key") is None
    # and they are the names keys.py builds now
    assert layout.renamed(b"il:run:{r:X}:steps") == keys.run_steps("X").encode()
    assert layout.renamed(b"il:{q}:ready") == keys.queue(0).ready.encode()
    assert layout.renamed(b"il:functions") == keys.FUNCTIONS.encode()


async def test_an_empty_store_is_marked_current() -> None:
    redis = fakeredis.FakeAsyncRedis()
    assert await layout.check(redis, migrate=False) == 0
    assert await redis.get(keys.LAYOUT_KEY) == keys.LAYOUT.encode()


async def test_a_drained_layout_1_store_is_renamed_only_when_asked() -> None:
    redis = fakeredis.FakeAsyncRedis()
    await redis.hset("il:functions", "f", "{}")
    await redis.zadd("il:runs", {"R": 1})
    await redis.hset("il:run:{r:R}", mapping={"status": "Completed"})
    await redis.sadd("il:conc-wait-keys", "il:conc-wait:f:-:x")
    with pytest.raises(layout.LayoutError, match="--migrate"):
        await layout.check(redis, migrate=False)
    assert await redis.exists("il:functions")  # nothing touched
    assert await layout.check(redis, migrate=True) == 3
    assert await redis.hget(keys.run("R"), "status") == b"Completed"
    assert await redis.zscore(keys.runs(0), "R") == 1
    assert await redis.hget(keys.FUNCTIONS, "f") == b"{}"
    assert not await redis.exists("il:functions", "il:runs", "il:run:{r:R}",
                                  "il:conc-wait-keys")
    assert await layout.check(redis, migrate=False) == 0  # current now


async def test_a_layout_1_store_still_running_is_refused() -> None:
    redis = fakeredis.FakeAsyncRedis()
    await redis.hset("il:functions", "f", "{}")
    await redis.zadd("il:runs:running", {"R": 1})
    with pytest.raises(layout.LayoutError, match="1 Running runs"):
        await layout.check(redis, migrate=True)
    assert await redis.exists("il:functions") and not await redis.exists(keys.FUNCTIONS)

