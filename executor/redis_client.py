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

from typing import cast

import redis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

MAX_CONNECTIONS = 256  # per process; redis-py's default refuses past 100
# per node in a cluster: its pool cannot make a request wait for a free connection (it
# refuses, and the request gets a 503), so it needs room for a whole burst of requests
MAX_CLUSTER_CONNECTIONS = 4096


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
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=20,
        retry=_retry(),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
    return Redis(connection_pool=pool)


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
