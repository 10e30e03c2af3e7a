"""Loads the Lua scripts in `lua/` once and runs them by SHA (EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from . import redis_client

_DIR = pathlib.Path(__file__).parent / "lua"
NAMES = ("lease", "renew", "reap", "complete", "retry", "finish", "ingest", "plan", "pause",
         "resume", "cancel", "checkpoint", "strand", "usage", "heartbeat", "stall",
         "backlog", "clock", "call_start", "unlisten")


_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


# Tests set INNGEST_LIKE_STRICT_KEYS=1: every script then runs behind a guard that fails any
# command naming a key its caller did not pass in KEYS (Redis itself only refuses keys of
# another slot, so a key built inside a script would go unnoticed until a cluster split it).
STRICT_ENV = "INNGEST_LIKE_STRICT_KEYS"
_STRICT_GUARD = """\
local declared_keys = {}
for _, k in ipairs(KEYS) do declared_keys[k] = true end
local redis_unguarded = redis
local function check_keys(cmd, ...)
  local name = string.upper(cmd)
  if name == 'TIME' then return end
  local args = {...}
  local last = (name == 'DEL' or name == 'EXISTS') and #args or 1
  for i = 1, last do
    if not declared_keys[args[i]] then
      error('strict keys: ' .. name .. ' names a key not in KEYS: ' .. tostring(args[i]))
    end
  end
end
local redis = setmetatable({
  call = function(cmd, ...) check_keys(cmd, ...) return redis_unguarded.call(cmd, ...) end,
  pcall = function(cmd, ...) check_keys(cmd, ...) return redis_unguarded.pcall(cmd, ...) end,
}, {__index = redis_unguarded})
"""


def source(name: str) -> str:
    """A script's text with its `--#include NAME` lines replaced by `lib_NAME.lua` (libraries
    may include others; each is included once, where it is first named); behind the
    strict-keys guard when STRICT_ENV is set."""
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        lib = match.group(1)
        if lib in seen:
            return ""
        seen.add(lib)
        return _INCLUDE.sub(include, (_DIR / f"lib_{lib}.lua").read_text())

    text = _INCLUDE.sub(include, (_DIR / f"{name}.lua").read_text())
    return _STRICT_GUARD + text if os.environ.get(STRICT_ENV) else text


class Scripts:
    def __init__(self, redis: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in NAMES
        }
        # the executor's own plain client (redis_client.connect): scripts sent the lean way
        # (a cluster client has no pool of its own: one per node)
        pool = getattr(redis, "connection_pool", None)
        self._lean = redis if isinstance(pool, redis_client.Pool) else None

    async def __call__(
        self, name: str, keys: list[str], args: list[Any], client: Any = None
    ) -> Any:
        script = self._scripts[name]
        if client is not None or self._lean is None:
            return await script(keys=keys, args=args, client=client)
        for attempt in (1, 2):  # as `pipelined`: once more after reloading the scripts
            try:
                return await redis_client.command(self._lean, "EVALSHA", script.sha,
                                                  len(keys), *keys, *args)
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.load_all()  # Redis restarted without its script cache
        raise AssertionError("unreachable")

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
