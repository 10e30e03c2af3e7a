"""Times as the executor reads and writes them: unix milliseconds inside, RFC 3339 (UTC) on
the wire (`inngest_like.wire`, one definition for both sides), in the API and on the
dashboard."""

from __future__ import annotations

import datetime

from inngest_like.wire import parse_time_ms as parse_ms
from inngest_like.wire import rfc3339_ms as rfc3339

__all__ = ["display", "parse_ms", "rfc3339", "rfc3339_seconds"]


def _utc(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def rfc3339_seconds(ms: int) -> str:
    """`2026-12-01T10:31:41Z`: whole seconds (cron's scheduledAt)."""
    return _utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def display(ms: int) -> str:
    """`2026-12-01 10:31:41`: compact UTC for tables."""
    return _utc(ms).strftime("%Y-%m-%d %H:%M:%S")
