"""The executor's Redis connection: reconnects and retries a command when a connection
breaks (a Redis restart), which is safe because every script is idempotent by design."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str) -> Redis:
    return Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8),
        retry_on_error=[ConnectionError, TimeoutError],
        health_check_interval=10,
        socket_keepalive=True,
    )
