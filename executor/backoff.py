"""When a failed call is tried again."""

from __future__ import annotations

import datetime
import email.utils
import random

from . import times

# Inngest's table: wait after the k-th failure (0-based), then 2 h for every later one.
TABLE_S = (15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200)
JITTER_S = 30
RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 24 * 3600


def delay_ms(failures: int, interval_s: float | None = None) -> int:
    """Delay before the next attempt; `interval_s` (the --retry-interval flag) makes it flat."""
    if interval_s is not None:
        return int(interval_s * 1000)
    base = TABLE_S[min(failures, len(TABLE_S) - 1)]
    return int((base + random.random() * JITTER_S) * 1000)


def retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """The due time a `Retry-After` header asks for (seconds or a date), clamped to 1 s to 24 h."""
    if not value:
        return None
    value = value.strip()
    due: int | None = None
    if value.isdigit() and len(value) <= 7:
        due = now_ms + int(value) * 1000
    else:
        try:
            due = times.parse_ms(value)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            due = int(moment.timestamp() * 1000)
    lo, hi = now_ms + RETRY_AFTER_MIN_S * 1000, now_ms + RETRY_AFTER_MAX_S * 1000
    return max(lo, min(hi, due))
