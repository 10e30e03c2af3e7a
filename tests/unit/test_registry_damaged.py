"""The registry read at start and on every version change survives damaged entries."""

from __future__ import annotations

import fakeredis

from executor import keys
from executor.registry import Registry


async def test_a_damaged_function_entry_is_skipped_not_fatal() -> None:
    """A registry entry that is not a stored function (a hand edit, an older layout's
    leftovers) is skipped with a log line: the executor still starts and serves the rest."""
    redis = fakeredis.FakeAsyncRedis()
    await redis.hset(keys.FUNCTIONS, mapping={"broken": "{}", "garbage": "not json"})
    await redis.set(keys.REGISTRY_VERSION, 1)
    registry = Registry(redis)
    await registry.refresh()
    assert registry.functions == {} and registry.version == 1
