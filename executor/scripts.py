"""Loads the Lua scripts in `lua/` once and runs them by SHA (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

import pathlib
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_DIR = pathlib.Path(__file__).parent / "lua"
NAMES = ("lease", "renew", "reap", "complete", "retry", "finish", "ingest", "plan", "pause",
         "resume", "cancel", "checkpoint")


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script((_DIR / f"{name}.lua").read_text()) for name in NAMES
        }

    async def __call__(
        self, name: str, keys: list[str], args: list[Any], client: Any = None
    ) -> Any:
        return await self._scripts[name](keys=keys, args=args, client=client)

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]
