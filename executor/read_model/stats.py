"""Apps and functions (their statistics: `counters.py`)."""

from __future__ import annotations

from typing import Any

import orjson

from .. import keys
from .base import Reads
from .views import _iso


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
