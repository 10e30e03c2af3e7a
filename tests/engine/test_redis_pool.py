"""The executor's Redis client on a real Redis: its pool's fast path reuses connections,
and once every connection is busy, callers queue and are handed the released ones in
turn, within the pool's bound; commands packed by hiredis mean what redis-py's mean."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError

from executor import keys
from executor.redis_client import Pool, connect
from executor.scripts import Scripts

from ..procs import RedisServer


async def test_sequential_commands_share_one_connection(real_redis: RedisServer) -> None:
    pool = Pool.from_url(real_redis.url, max_connections=4, timeout=1)
    redis = Redis(connection_pool=pool)
    try:
        for i in range(50):
            await redis.set("pool:k", i)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.get("pool:k")
            pipe.incr("pool:n")
            got, _ = await pipe.execute()
        assert got == b"49"
        assert len(pool._in_use_connections) == 0 and len(pool._available_connections) == 1
    finally:
        await redis.aclose()
        await pool.disconnect()


async def test_callers_queue_for_an_exhausted_pool_and_all_get_through(
        real_redis: RedisServer) -> None:
    pool = Pool.from_url(real_redis.url, max_connections=2, timeout=2)
    redis = Redis(connection_pool=pool)
    most = 0

    async def hold() -> None:
        nonlocal most
        # each command holds its connection ~50 ms (BLPOP on an empty list times out)
        await redis.blpop(["pool:empty"], timeout=0.05)
        most = max(most, len(pool._in_use_connections))

    try:
        # 12 x 50 ms over 2 connections: ~0.3 s; a waiter nobody notified would wait out
        # the pool's 2 s timeout and fail with "No connection available"
        async with asyncio.timeout(1.5):
            await asyncio.gather(*(hold() for _ in range(12)))
        assert most <= 2
        assert pool.waiting == 0
        assert len(pool._in_use_connections) == 0 and len(pool._available_connections) == 2
        assert await redis.ping()  # and the fast path works again once nobody waits
    finally:
        await redis.aclose()
        await pool.disconnect()


async def test_commands_packed_by_hiredis_keep_redis_py_meaning(real_redis: RedisServer) -> None:
    redis = connect(real_redis.url)
    pool = redis.connection_pool
    try:
        assert pool.connection_class.__name__ == "_Connection"
        values: list[tuple[Any, bytes]] = [("é", "é".encode()), (7, b"7"), (2.5, b"2.5"),
                                           (b"\x00raw", b"\x00raw"),
                                           (bytearray(b"ba"), b"ba"),  # packed by redis-py
                                           (memoryview(b"mv"), b"mv")]
        for value, stored in values:
            await redis.set("pack:k", value)
            assert await redis.get("pack:k") == stored
        with pytest.raises(DataError):  # refused before sending, as redis-py refuses
            await redis.set("pack:k", True)  # type: ignore[arg-type]
        assert await redis.config_get("appendfsync") == {"appendfsync": "always"}
        async with redis.pipeline(transaction=True) as pipe:
            pipe.set("pack:a", "1").incr("pack:a").get("pack:a")
            assert (await pipe.execute())[-1] == b"2"
        assert await redis.eval("return ARGV[1] .. KEYS[1]", 1, "k", "v") == b"vk"
    finally:
        await redis.aclose()
    # a TLS or unix socket URL keeps its kind of connection
    assert connect("rediss://127.0.0.1:1/0").connection_pool.connection_class.__name__ == \
        "_SSLConnection"
    assert connect("unix:///tmp/none.sock").connection_pool.connection_class.__name__ == \
        "_UnixConnection"


async def test_scripts_sent_the_lean_way_survive_a_flushed_cache_and_a_killed_connection(
        real_redis: RedisServer) -> None:
    redis = connect(real_redis.url)
    scripts = Scripts(redis)
    try:
        await scripts.load_all()
        assert scripts._lean is redis
        key = keys.run("lean-run")
        await redis.hset(key, "status", "Done")
        args = [1, "", "", 1000]
        assert (await scripts("checkpoint", [key, "m", "s", "st", "l"], args))[0] == -1
        await redis.script_flush()  # Redis lost its script cache (a restart): reloaded
        assert (await scripts("checkpoint", [key, "m", "s", "st", "l"], args))[0] == -1
        # the pool's connection is killed under it: the command goes again, reconnected
        await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
        assert (await scripts("checkpoint", [key, "m", "s", "st", "l"], args))[0] == -1
    finally:
        await redis.aclose()


async def test_a_cluster_client_sends_scripts_the_client_s_way() -> None:
    cluster = connect("redis://127.0.0.1:1/0", cluster=True)  # not connected until used
    assert Scripts(cluster)._lean is None
    await cluster.aclose()
