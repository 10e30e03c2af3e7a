"""Each engine test runs against the in-memory fake and a real redis-server (so the Lua runs
on the real interpreter too)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
from redis.asyncio import Redis

from executor import keys
from executor.redis_client import connect

from ..procs import RedisServer
from .harness import Engine


@pytest.fixture(scope="session")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("engine-redis"))
    server.start()
    yield server
    server.stop()


# "sharded": a real Redis holding a store of SHARDED shards, so every engine test also
# holds with a store cut into shards; the others' store has INNGEST_LIKE_TEST_SHARDS (1
# unless set: set it to run them all sharded)
SHARDED = 3
SHARDS = int(os.environ.get("INNGEST_LIKE_TEST_SHARDS", "1"))


@pytest.fixture(params=["fake", "real", "sharded"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    if request.param == "fake":
        client: Redis = fakeredis.FakeAsyncRedis()
    else:
        client = connect(request.getfixturevalue("real_redis").url)  # the executor's pool
        await client.flushdb()
    keys.configure(SHARDED if request.param == "sharded" else SHARDS)
    yield client
    keys.configure(1)
    await client.aclose()


@pytest.fixture
async def engine(redis: Redis) -> AsyncIterator[Engine]:
    built = Engine(redis)
    yield built
    await built.executor.driver.close()


@pytest.fixture
def three_shards(redis: Redis) -> Iterator[None]:
    """A store of three shards, whatever the `redis` fixture's (set after it), for tests
    that seed a sharded store key by key."""
    keys.configure(3)
    try:
        yield
    finally:
        keys.configure(1)
