"""The executor's Redis connection: reconnects and retries a command when a connection
breaks (a Redis restart), which is safe because every script is idempotent by design; and a
blocking pool, so a burst of requests waits for a free connection instead of failing."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError

MAX_CONNECTIONS = 256  # per process; redis-py's default pool refuses past 100


def connect(url: str) -> Redis:
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=20,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
    return Redis(connection_pool=pool)
