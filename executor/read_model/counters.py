"""Per-function statistics read from the exact counters of `executor/metrics_store.py`: runs
per minute (hour) by status, failure rate, p50 / p95 / p99 of execution time and of queue
time, and the backlog (ready items and the oldest one's age) per function.

Cost: one HGETALL per bucket of the window (60 minutes, 24 or 168 hours), pipelined, plus
one read-only script for the backlog; independent of the number of runs stored.
"""

from __future__ import annotations

import asyncio
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

    def key(self, function_id: str, start_ms: int, shard: int) -> str:
        if self.bucket_ms == MINUTE_MS:
            return keys.stats_minute(function_id, start_ms // MINUTE_MS, shard)
        return keys.stats_hour(function_id, start_ms // HOUR_MS, shard)


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


def _sum(hashes: list[dict[bytes, bytes]]) -> dict[bytes, bytes]:
    """One bucket's counters from its shards' hashes (one shard's: that hash)."""
    if len(hashes) == 1:
        return hashes[0]
    total: dict[bytes, int] = {}
    for fields in hashes:
        for metric, count in fields.items():
            total[metric] = total.get(metric, 0) + int(count)
    return {metric: str(count).encode() for metric, count in total.items()}


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
        """`function_metrics` for several windows, reading each hash and the backlog once:
        for each function (the synced ones, and any with a backlog), one HGETALL per
        bucket of the windows and, for the runs of the last hour, one HGET per minute."""
        hour = WINDOWS["1h"]
        backlog, capped = await self.backlog(now_ms)
        if function_id is not None:
            functions = [function_id]
        else:
            synced: Any = await self.redis.hkeys(keys.FUNCTIONS)
            functions = sorted({f.decode() for f in synced} | set(backlog))
        plans = {name: WINDOWS[name].starts(now_ms) for name in windows}
        # each shard counts the runs it holds: a bucket is its shards' hashes summed
        buckets = sorted({(n, fn, s) for fn in functions for n, starts in plans.items()
                          for s in starts})
        n = keys.shard_count()
        minutes = [] if "1h" in windows else [hour.key(fn, s, shard) for fn in functions
                                               for s in hour.starts(now_ms)
                                               for shard in keys.shards()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, fn, start in buckets:
                for shard in keys.shards():
                    pipe.hgetall(WINDOWS[name].key(fn, start, shard))
            for key in minutes:
                pipe.hget(key, "started")
            replies = await pipe.execute()
        found = {bucket: _sum(replies[at * n:(at + 1) * n])
                 for at, bucket in enumerate(buckets)}
        started = replies[len(buckets) * n:]  # per function, its 60 minutes' shards in order
        per_function = hour.buckets * n
        last_hour = {fn: sum(int(v or 0) for v in started[at * per_function:
                                                         (at + 1) * per_function])
                     for at, fn in enumerate(functions)} if minutes else {}
        out: dict[str, dict[str, Any]] = {}
        for name in windows:
            win, starts = WINDOWS[name], plans[name]
            per: dict[str, dict[str, Any]] = {}
            for fn in functions:
                entry = self._fold([found[(name, fn, s)] for s in starts])
                if entry is None and fn not in backlog:
                    continue
                per[fn] = entry or _empty(len(starts))
            if name == "1h":
                last_hour = {fn: e["started"] for fn, e in per.items()}
            out[name] = {"functions": per, "window": win, "starts": starts,
                         "backlog_capped": capped, "now_ms": now_ms}
        for result in out.values():
            for fn, entry in result["functions"].items():
                entry["hour"] = last_hour.get(fn, 0)
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
        return out

    @staticmethod
    def _fold(buckets: list[dict[bytes, bytes]]) -> dict[str, Any] | None:
        """Sum one function's counters over consecutive buckets (`series` keeps each);
        None when it has none."""
        if not any(buckets):
            return None
        entry = _empty(len(buckets))
        statuses = {s.encode(): s for s in END_STATUSES}
        exec_hist, queue_hist = entry["exec_hist"], entry["queue_hist"]
        for i, fields in enumerate(buckets):
            series = entry["series"][i]
            for metric, raw_count in fields.items():
                count = int(raw_count)
                head = metric[:1]
                if head == b"e" or head == b"q":
                    hist = exec_hist if head == b"e" else queue_hist
                    b = int(metric[1:])
                    hist[b] = hist.get(b, 0) + count
                elif metric == b"started":
                    entry["started"] += count
                    series["started"] += count
                elif metric in statuses:
                    entry["ended"][statuses[metric]] += count
                    series[statuses[metric]] += count
        return entry

    async def backlog(self, now_ms: int,
                      cap: int = BACKLOG_CAP) -> tuple[dict[str, tuple[int, int]], bool]:
        """Per function: (queue items due and not yet taken, incl. those a concurrency limit
        holds back; the oldest one's due time), and whether the cap cut the count short."""
        if self._backlog is None:
            self._backlog = self.redis.register_script(source("backlog"))
        # the script reads one shard's queue (a script touches one shard's keys): it runs in
        # each shard at once, examining up to `cap` items there; counts summed, oldest kept
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in keys.shards():
                pipe.smembers(keys.concurrency_waiting_keys(shard))
            slots = await pipe.execute()
        answers = await asyncio.gather(*(self._backlog(
            keys=[keys.queue(shard).ready, keys.queue(shard).items,
                  *(keys.slot_keys(_name(n), shard)[1] for n in sorted(slots[shard]))],
            args=[now_ms, cap])
            for shard in keys.shards()))
        found: dict[str, tuple[int, int]] = {}
        capped = False
        for out in answers:
            capped = capped or bool(int(out[1]))
            for i in range(2, len(out), 3):
                fn = out[i].decode() if isinstance(out[i], bytes) else str(out[i])
                count, oldest = int(out[i + 1]), int(out[i + 2])
                if fn in found:
                    count, oldest = found[fn][0] + count, min(found[fn][1], oldest)
                found[fn] = (count, oldest)
        return found, capped


def _name(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = ["WINDOWS", "Counters", "Window", "metrics_store", "percentile"]
