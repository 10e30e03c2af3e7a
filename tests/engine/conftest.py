"""Each engine test runs against the in-memory fake and a real redis-server (so the Lua runs
on the real interpreter too)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
from redis.asyncio import Redis

from executor import keys

from ..procs import RedisServer
from .harness import Engine


@pytest.fixture(scope="session")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("engine-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["fake", "real"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    if request.param == "fake":
        client: Redis = fakeredis.FakeAsyncRedis()
    else:
        client = Redis.from_url(request.getfixturevalue("real_redis").url)
        await client.flushdb()
    yield client
    await client.aclose()


# the engine's store is cut into this many shards (INNGEST_LIKE_TEST_SHARDS; 1 unless set)
SHARDS = int(os.environ.get("INNGEST_LIKE_TEST_SHARDS", "1"))


@pytest.fixture
async def engine(redis: Redis) -> AsyncIterator[Engine]:
    keys.configure(SHARDS)
    built = Engine(redis)
    yield built
    await built.executor.driver.close()
    keys.configure(1)
