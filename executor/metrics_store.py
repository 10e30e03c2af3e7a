"""Exact per-function statistics, counted by the scripts that start and end runs (not sampled).

Every run that starts or ends adds to two hashes of its function: the minute's
(`keys.stats_minute`) and the hour's (`keys.stats_hour`). Their fields are metrics:

- `started`: runs that started (Skipped runs are counted as `Skipped` instead);
- `Completed` / `Failed` / `Cancelled` / `Skipped`: runs that ended with that status;
- `e<b>`: runs that ended whose execution time (the sum of their calls to the app, every
  attempt) falls in duration bucket `b`;
- `q<b>`: the same for their queue time (the sum of the waits between a call being due and a
  worker taking it, flow-control holds included).

Buckets are 1/16 of an octave wide (`bucket`), so a percentile read from them is the
bucket's middle, within 2.2 % of the exact value; counts are exact. Minute hashes are kept
`MINUTE_RETENTION_MS` (rolling windows to the minute), hour hashes `HOUR_RETENTION_MS`
(charts over days). The Lua side is `lib_stats.lua`; reads are `read_model/counters.py`.
"""

from __future__ import annotations

import math

from . import keys

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MINUTE_RETENTION_MS = 48 * HOUR_MS
HOUR_RETENTION_MS = 15 * 24 * HOUR_MS
BUCKETS_PER_OCTAVE = 16
END_STATUSES = ("Completed", "Failed", "Cancelled", "Skipped")


def bucket(ms: int | float) -> int:
    """The duration bucket of `ms` (the Lua side computes the same)."""
    return math.floor(math.log(max(0.0, ms) + 1) / math.log(2) * BUCKETS_PER_OCTAVE + 1e-9)


def bucket_bounds(b: int) -> tuple[float, float]:
    """[low, high) of bucket `b`, in ms."""
    return 2 ** (b / BUCKETS_PER_OCTAVE) - 1, 2 ** ((b + 1) / BUCKETS_PER_OCTAVE) - 1


def bucket_value(b: int) -> float:
    """The value a percentile falling in bucket `b` reports: its geometric middle."""
    return float(2 ** ((b + 0.5) / BUCKETS_PER_OCTAVE) - 1)


def stat_keys(function_id: str, now_ms: int, shard: int) -> list[str]:
    """The minute and hour hashes a run of `function_id` starting or ending at `now_ms`
    counts in."""
    return [keys.stats_minute(function_id, now_ms // MINUTE_MS, shard),
            keys.stats_hour(function_id, now_ms // HOUR_MS, shard)]


def stat_expiries(now_ms: int) -> list[int]:
    """When those hashes expire (unix ms): their period's start plus the retention."""
    return [now_ms // MINUTE_MS * MINUTE_MS + MINUTE_MS + MINUTE_RETENTION_MS,
            now_ms // HOUR_MS * HOUR_MS + HOUR_MS + HOUR_RETENTION_MS]
