"""Apps, functions and per-function statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .. import keys
from .base import Reads
from .views import _int, _iso, _text

STATS_SAMPLE = 5000


class Stats(Reads):
    async def apps(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(keys.APPS)
        apps = [orjson.loads(v) for v in raw.values()]
        for app in apps:
            app.pop("checksum", None)
            app["synced_at"] = _iso(app.get("synced_at"))
        return sorted(apps, key=lambda a: str(a["id"]))

    async def functions(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(keys.FUNCTIONS)
        out = []
        for value in raw.values():
            stored = orjson.loads(value)
            config = stored["config"]
            out.append({"id": config["id"], "name": config.get("name"), "app_id": stored["app_id"],
                        "triggers": config.get("triggers", []), "config": config})
        return sorted(out, key=lambda f: str(f["id"]))

    async def function_stats(self, now_ms: int, sample: int = STATS_SAMPLE) -> dict[str, Any]:
        """Per function over the last day: runs in the last hour and day, failure rate of the
        runs that ended, p50 / p95 duration, and runs per hour (24 buckets, oldest first)."""
        day_ago = now_ms - 24 * 3600 * 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrangebyscore(keys.RUNS, "+inf", day_ago, start=0, num=sample)
            pipe.zcount(keys.RUNS, day_ago, "+inf")
            ids, total = await pipe.execute()
        run_ids = [_text(i) for i in ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), ["function_id", "status", "started_at", "ended_at"])
            values = await pipe.execute() if run_ids else []
        per: dict[str, dict[str, Any]] = {}
        oldest = now_ms
        for fn_id, status, started_raw, ended_raw in values:
            started = _int(started_raw)
            if fn_id is None or started is None:
                continue
            oldest = min(oldest, started)
            entry = per.setdefault(_text(fn_id), {
                "hour": 0, "day": 0, "ended": 0, "failed": 0, "durations": [],
                "buckets": [[0, 0] for _ in range(24)]})
            entry["day"] += 1
            if started >= now_ms - 3600 * 1000:
                entry["hour"] += 1
            bucket = min(23, max(0, 23 - (now_ms - started) // (3600 * 1000)))
            st = _text(status or b"")
            entry["buckets"][bucket][1 if st == "Failed" else 0] += 1
            ended = _int(ended_raw)
            if st in ("Completed", "Failed", "Cancelled"):
                entry["ended"] += 1
                if st == "Failed":
                    entry["failed"] += 1
                if ended and st != "Cancelled":
                    entry["durations"].append(ended - started)
        out = {}
        for fn_id, entry in per.items():
            durations = sorted(entry.pop("durations"))
            entry["failure_rate"] = entry["failed"] / entry["ended"] if entry["ended"] else None
            entry["p50_ms"] = _percentile(durations, 0.50)
            entry["p95_ms"] = _percentile(durations, 0.95)
            out[fn_id] = entry
        return {"functions": out, "sampled": len(run_ids), "total": int(total),
                "complete": len(run_ids) >= int(total), "oldest_ms": oldest}


def _percentile(values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    rank = max(1, -(-len(values) * q // 1))  # ceil(n * q)
    return int(values[int(rank) - 1])
