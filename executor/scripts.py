"""Loads the Lua scripts in `lua/` once and runs them by SHA (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_DIR = pathlib.Path(__file__).parent / "lua"
NAMES = ("lease", "renew", "reap", "complete", "retry", "finish", "ingest", "plan", "pause",
         "resume", "cancel", "checkpoint", "strand", "usage", "heartbeat", "stall",
         "backlog", "clock")


_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


def source(name: str) -> str:
    """A script's text with its `--#include NAME` lines replaced by `lib_NAME.lua` (libraries
    may include others; each is included once, where it is first named)."""
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        lib = match.group(1)
        if lib in seen:
            return ""
        seen.add(lib)
        return _INCLUDE.sub(include, (_DIR / f"lib_{lib}.lua").read_text())

    return _INCLUDE.sub(include, (_DIR / f"{name}.lua").read_text())


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in NAMES
        }

    async def __call__(
        self, name: str, keys: list[str], args: list[Any], client: Any = None
    ) -> Any:
        return await self._scripts[name](keys=keys, args=args, client=client)

    def script(self, name: str) -> AsyncScript:
        return self._scripts[name]

    def queue_in(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Add a script call to a pipeline by SHA alone. (redis-py's Script in a pipeline
        first asks SCRIPT EXISTS: a round trip per step; and a cluster pipeline refuses
        `evalsha` by name.) Send the pipeline with `pipelined`, which reloads the scripts
        when Redis lost its cache."""
        pipe.execute_command("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    async def pipelined(self, redis: Redis, fill: Callable[[Any], None]) -> list[Any]:
        """Execute a pipeline that `fill` builds (scripts in it by `queue_in`); built and sent
        again once, after reloading the scripts, when Redis lost its script cache."""
        for attempt in (1, 2):
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    fill(pipe)
                    return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.load_all()  # Redis restarted without its script cache
        raise AssertionError("unreachable")

    async def load_all(self) -> None:
        for script in self._scripts.values():
            await script.registered_client.script_load(script.script)
