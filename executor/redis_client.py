"""The executor's Redis connection: reconnects and retries a command when a connection
breaks (a Redis restart, a cluster failover), which is safe because every script is
idempotent by design; and a blocking pool, so a burst of requests waits for a free
connection instead of failing.

A Redis Cluster is used through redis-py's cluster client, which follows the cluster's
topology (MOVED, a replica promoted after its master died). Every script and pipeline we
send touches one shard, one hash slot (keys.py), so it is valid there; the cluster client answers
the commands we use as the plain one does, so the rest of the executor types it as one.
"""

from __future__ import annotations

from typing import Any, cast

import hiredis
import redis
from redis.asyncio import BlockingConnectionPool, Redis, connection
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

MAX_CONNECTIONS = 256  # per process; redis-py's default refuses past 100
# per node in a cluster: its pool cannot make a request wait for a free connection (it
# refuses, and the request gets a 503), so it needs room for a whole burst of requests
MAX_CLUSTER_CONNECTIONS = 4096


class _HiredisPacking:
    """Commands packed by hiredis (C), as redis-py's sync client packs them; its asyncio
    client packs in Python: 10 us for a script call of 15 arguments, 1.8 us with hiredis,
    on every script and pipeline the executor sends."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " not in args[0]:  # "CONFIG GET": split by redis-py
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass  # a type hiredis does not take (bytearray): packed, or refused, as before
        return cast(list[bytes], super().pack_command(*args))  # type: ignore[misc]


class _Connection(_HiredisPacking, connection.Connection):
    pass


class _SSLConnection(_HiredisPacking, connection.SSLConnection):
    pass


class _UnixConnection(_HiredisPacking, connection.UnixDomainSocketConnection):
    pass


# the connection class redis-py picks for a URL's scheme -> the same, packing with hiredis
_PACKING = {connection.Connection: _Connection, connection.SSLConnection: _SSLConnection,
            connection.UnixDomainSocketConnection: _UnixConnection}


class Pool(BlockingConnectionPool):
    """redis-py's blocking pool, with a fast path while no command waits for a connection.

    Its own `get_connection` takes a condition, arms a timeout and awaits its metrics
    hooks on every command, and `release` notifies the condition: about half the client's
    CPU per command in a burst (a GET from 64 tasks at once: 70 -> 37 us of CPU each, one
    alone: 120 -> 95 us), on a path every step takes several times. When a connection is free and
    nobody waits, taking and giving back one needs none of that (one event loop: no await
    between the check and the take). The connection is still checked as the pool checks it
    (`ensure_connection`); once the pool is exhausted, every caller queues on the
    condition as before, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0  # callers in the blocking path (they get released connections)

    async def get_connection(self, command_name: Any = None, *keys: Any,
                             **options: Any) -> AbstractConnection:
        # (a server in maintenance, which we never ask to hear of, takes redis-py's path;
        # redis-py 8 knows of that)
        if self.waiting or not self.can_get_connection() \
                or getattr(self, "_in_maintenance", False):
            self.waiting += 1
            try:
                return cast(AbstractConnection,
                            await super().get_connection())  # type: ignore[no-untyped-call]
            finally:
                self.waiting -= 1
        connection: AbstractConnection = \
            self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        # a caller waits for this connection (notify it), or the server asked for a new one
        if self.waiting or connection.should_reconnect():  # type: ignore[no-untyped-call]
            await super().release(connection)
            return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)


async def command(redis: Redis, *args: Any) -> Any:
    """One command on a connection of `redis`'s pool (a `Pool`), without the client's
    per-command wrapper: redis-py 8 awaits observability hooks and builds retry closures
    on every command, about 40 us of CPU, as much as the rest of a script call on the
    executor's side. The answer is the client's (no response callback applies to the
    commands sent this way: EVALSHA). A connection that breaks (it is dropped) sends the
    command again through the client, which reconnects and retries: every script is
    idempotent by design."""
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_command(*args)
        return await connection.read_response()
    except (ConnectionError, TimeoutError):
        pass
    finally:
        await pool.release(connection)
    return await redis.execute_command(*args)  # type: ignore[no-untyped-call]


def _retry() -> Retry:
    # a cluster's failover takes about its node timeout plus an election: retry ~5 s
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=12)


def connect(url: str, *, cluster: bool = False) -> Redis:
    if cluster:
        # a socket timeout: while the cluster fails over, a command sent on a connection
        # the client is tearing down must fail (and be retried), never wait forever;
        # 10 s is far above any script's time and any BLPOP we send (1 s at most)
        return cast(Redis, RedisCluster.from_url(
            url, max_connections=MAX_CLUSTER_CONNECTIONS, retry=_retry(),
            retry_on_error=[ConnectionError, TimeoutError], health_check_interval=10,
            socket_keepalive=True, socket_timeout=10, socket_connect_timeout=5))
    pool = Pool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=20,
        retry=_retry(),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
    pool.connection_class = _PACKING.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)  # closed with the client


def is_cluster_client(client: object) -> bool:
    """Whether `client` (as `connect` made it) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def is_cluster(url: str) -> bool:
    """Whether the Redis at `url` is a node of a Redis Cluster (`cluster_enabled:1`)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    finally:
        client.close()
