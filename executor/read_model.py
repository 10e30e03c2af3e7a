"""Reads for the REST API (and the dashboard): runs, their steps, events. Never writes."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis.asyncio import Redis

from . import keys


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    import datetime

    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def run_view(fields: dict[Any, Any]) -> dict[str, Any]:
    def get(name: str) -> str:
        return bytes(fields.get(name.encode(), b"")).decode()

    output = fields.get(b"output")
    ended = int(get("ended_at") or 0)
    return {
        "run_id": get("run_id"),
        "function_id": get("function_id"),
        "app_id": get("app_id"),
        "event_id": get("event_id"),
        "status": get("status"),
        "output": orjson.loads(output) if output else None,
        "run_started_at": _iso(int(get("started_at") or 0)),
        "ended_at": _iso(ended),
        "last_error": get("last_error") or None,
    }


def event_view(raw: Any) -> dict[str, Any]:
    stored = orjson.loads(raw)
    internal_id = stored.pop("internal_id", stored.get("id"))
    return {
        "id": internal_id,
        "internal_id": internal_id,
        "name": stored.get("name"),
        "data": stored.get("data"),
        "ts": stored.get("ts"),
        "received_at": _iso(stored.get("ts")),
        "event": stored,
    }


class ReadModel:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def run(self, run_id: str) -> dict[str, Any] | None:
        fields = await self.redis.hgetall(keys.run(run_id))
        return run_view(fields) if fields else None

    async def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hgetall(keys.run(run_id))
            rows = await pipe.execute()
        return [run_view(fields) for fields in rows if fields]

    async def recent_runs(self, limit: int) -> list[dict[str, Any]]:
        run_ids = await self.redis.zrevrange(keys.RUNS, 0, limit - 1)
        return await self.runs([_text(r) for r in run_ids])

    async def steps(self, run_id: str) -> list[dict[str, Any]] | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.run(run_id))
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            pipe.lrange(keys.run_stack(run_id), 0, -1)
            exists, records, memos, stack = await pipe.execute()
        if not exists:
            return None
        order = {_text(h): i for i, h in enumerate(stack)}
        out = []
        for hashed, raw in records.items():
            rec = orjson.loads(raw)
            memo = memos.get(hashed)
            value = orjson.loads(memo) if memo else None
            if isinstance(value, dict) and "data" in value:
                rec["output"] = value["data"]
            elif isinstance(value, dict) and "error" in value:
                rec["error"] = value["error"]
            if rec.get("status") == "Sleeping" and rec.get("until", 0) <= time.time() * 1000:
                rec["status"] = "Completed"  # the sleep is over (its record is not rewritten)
            rec["started_at"] = _iso(rec.get("started_at"))
            rec["ended_at"] = _iso(rec.get("ended_at"))
            if rec.get("until"):
                rec["until"] = _iso(rec["until"])
            if rec.get("retry_at"):
                rec["retry_at"] = _iso(rec["retry_at"])
            rec["order"] = order.get(hashed.decode())
            out.append(rec)
        big = len(order) + len(out)
        out.sort(key=lambda r: (r["order"] if r["order"] is not None else big, r["started_at"] or ""))
        return out

    async def event(self, event_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.event(event_id))
        return event_view(raw) if raw else None

    async def events(self, name: str | None, limit: int) -> list[dict[str, Any]]:
        index = keys.events_by_name(name) if name else keys.EVENTS
        ids = await self.redis.zrevrange(index, 0, limit - 1)
        if not ids:
            return []
        raws = await self.redis.mget([keys.event(_text(i)) for i in ids])
        return [event_view(raw) for raw in raws if raw]

    async def event_runs(self, event_id: str) -> list[dict[str, Any]]:
        run_ids = await self.redis.lrange(keys.event_runs(event_id), 0, -1)
        return await self.runs([_text(r) for r in run_ids])

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

    async def run_batch(self, run_id: str) -> list[Any] | None:
        raw = await self.redis.hget(keys.run(run_id), "events")
        return orjson.loads(raw) if raw else None

    async def run_actions(self, run_id: str) -> dict[str, Any] | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.run(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            exists, memos = await pipe.execute()
        if not exists:
            return None
        return {k.decode(): orjson.loads(v) for k, v in memos.items()}
