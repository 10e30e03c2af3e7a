"""Per-function statistics read from the exact counters of `executor/metrics_store.py`: runs
per minute (hour) by status, failure rate, p50 / p95 / p99 of execution time and of queue
time, and the backlog (ready items and the oldest one's age) per function.

Cost: one HGETALL per bucket of the window (60 minutes, 24 or 168 hours), pipelined, plus
one read-only script for the backlog; independent of the number of runs stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import keys, metrics_store
from ..metrics_store import END_STATUSES, HOUR_MS, MINUTE_MS, bucket_value
from ..scripts import source
from .base import Reads

BACKLOG_CAP = 200_000  # the backlog read examines at most this many queue items


@dataclasses.dataclass(frozen=True)
class Window:
    name: str
    label: str
    bucket_ms: int
    buckets: int

    def starts(self, now_ms: int) -> list[int]:
        """The start of each bucket, oldest first; the last holds `now_ms`."""
        last = now_ms // self.bucket_ms * self.bucket_ms
        return [last - (self.buckets - 1 - i) * self.bucket_ms for i in range(self.buckets)]

    def key(self, start_ms: int) -> str:
        if self.bucket_ms == MINUTE_MS:
            return keys.stats_minute(start_ms // MINUTE_MS)
        return keys.stats_hour(start_ms // HOUR_MS)


WINDOWS = {
    "1h": Window("1h", "last hour, per minute", MINUTE_MS, 60),
    "24h": Window("24h", "last 24 hours, per hour", HOUR_MS, 24),
    "7d": Window("7d", "last 7 days, per hour", HOUR_MS, 168),
}


def percentile(hist: dict[int, int], q: float) -> int | None:
    """Nearest-rank percentile of a bucket histogram: the middle of the bucket holding it."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, -(-total * q // 1))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return round(bucket_value(b))
    return None


def _empty(buckets: int) -> dict[str, Any]:
    return {"started": 0, "ended": dict.fromkeys(END_STATUSES, 0), "exec_hist": {},
            "queue_hist": {}, "series": [dict.fromkeys(("started", *END_STATUSES), 0)
                                         for _ in range(buckets)]}


class Counters(Reads):
    _backlog: Any = None

    async def _hashes(self, names: list[str]) -> list[dict[bytes, bytes]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(name)
            found: list[dict[bytes, bytes]] = await pipe.execute()
        return found

    async def function_metrics(self, now_ms: int, window: str = "24h",
                               function_id: str | None = None) -> dict[str, Any]:
        """Per function (or just `function_id`): counts, failure rate, percentiles and a
        series of buckets over `window` (see WINDOWS), runs started in the last 60 minutes,
        and the backlog now."""
        found: dict[str, Any] = (await self.function_metrics_many(now_ms, (window,),
                                                                  function_id))[window]
        return found

    async def function_metrics_many(self, now_ms: int, windows: tuple[str, ...],
                                    function_id: str | None = None) -> dict[str, Any]:
        """`function_metrics` for several windows, reading each hash and the backlog once."""
        hour = WINDOWS["1h"]
        plans = {name: WINDOWS[name].starts(now_ms) for name in windows}
        plans.setdefault("1h", hour.starts(now_ms))  # "runs in the last hour" is always shown
        names = sorted({WINDOWS[n].key(s) for n, starts in plans.items() for s in starts})
        found = dict(zip(names, await self._hashes(names), strict=True))
        backlog, capped = await self.backlog(now_ms)
        last_hour = self._fold([found[hour.key(s)] for s in plans["1h"]], function_id)
        out = {}
        for name in windows:
            win, starts = WINDOWS[name], plans[name]
            per = self._fold([found[win.key(s)] for s in starts], function_id)
            for fn in backlog:
                if function_id is None or fn == function_id:
                    per.setdefault(fn, _empty(len(starts)))
            for fn, entry in per.items():
                entry["hour"] = last_hour[fn]["started"] if fn in last_hour else 0
                ended = entry["ended"]
                finished = ended["Completed"] + ended["Failed"] + ended["Cancelled"]
                entry["finished"] = finished
                entry["failed"] = ended["Failed"]
                entry["failure_rate"] = ended["Failed"] / finished if finished else None
                for kind in ("exec", "queue"):
                    hist = entry[f"{kind}_hist"]
                    entry[kind] = {"count": sum(hist.values()),
                                   **{f"p{q}": percentile(hist, q / 100) for q in (50, 95, 99)}}
                count, oldest = backlog.get(fn, (0, None))
                entry["backlog"] = {"count": count, "oldest_ms": oldest,
                                    "age_ms": max(0, now_ms - oldest) if oldest else None}
            out[name] = {"functions": per, "window": win, "starts": starts,
                         "backlog_capped": capped, "now_ms": now_ms}
        return out

    @staticmethod
    def _fold(buckets: list[dict[bytes, bytes]],
              function_id: str | None) -> dict[str, dict[str, Any]]:
        """Sum the counters of consecutive buckets per function (`series` keeps each)."""
        per: dict[str, dict[str, Any]] = {}
        prefix = f"{function_id}|".encode() if function_id is not None else None
        for i, fields in enumerate(buckets):
            for raw_field, raw_count in fields.items():
                if prefix is not None and not raw_field.startswith(prefix):
                    continue
                fn, _, metric = raw_field.decode().rpartition("|")
                entry = per.setdefault(fn, _empty(len(buckets)))
                count = int(raw_count)
                if metric == "started":
                    entry["started"] += count
                    entry["series"][i]["started"] += count
                elif metric in entry["ended"]:
                    entry["ended"][metric] += count
                    entry["series"][i][metric] += count
                elif metric[:1] in ("e", "q") and metric[1:].isdigit():
                    hist = entry["exec_hist" if metric[0] == "e" else "queue_hist"]
                    hist[int(metric[1:])] = hist.get(int(metric[1:]), 0) + count
        return per

    async def backlog(self, now_ms: int,
                      cap: int = BACKLOG_CAP) -> tuple[dict[str, tuple[int, int]], bool]:
        """Per function: (queue items due and not yet taken, incl. those a concurrency limit
        holds back; the oldest one's due time), and whether the cap cut the count short."""
        if self._backlog is None:
            self._backlog = self.redis.register_script(source("backlog"))
        out = await self._backlog(
            keys=[keys.QUEUE_READY, keys.QUEUE_ITEMS, keys.CONCURRENCY_WAITING],
            args=[now_ms, cap])
        found: dict[str, tuple[int, int]] = {}
        for i in range(2, len(out), 3):
            fn = out[i].decode() if isinstance(out[i], bytes) else str(out[i])
            found[fn] = (int(out[i + 1]), int(out[i + 2]))
        return found, bool(int(out[1]))


__all__ = ["WINDOWS", "Counters", "Window", "metrics_store", "percentile"]
