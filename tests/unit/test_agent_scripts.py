"""Each return code of the agent-operations scripts (usage.lua, heartbeat.lua, stall.lua),
on the in-memory fake and a real redis-server."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from executor import keys
from executor.scripts import Scripts

from .test_lua_scripts import real_redis, redis  # noqa: F401  (fixtures)

NOW = 1_800_000_000_000
RUN = "r1"


def report(calls: int, cost: float, tokens: int = 10) -> bytes:
    return orjson.dumps({"calls": calls, "models": {"m": {
        "input_tokens": tokens, "output_tokens": 0, "cost_usd": cost}}})


async def _usage(scripts: Scripts, call: str, body: bytes) -> list[Any]:
    out: list[Any] = await scripts(
        "usage", [keys.run(RUN), keys.run_usage(RUN), keys.function_usage("f", 0)],
        [call, "h1", "step one", 1, body, NOW])
    return out


async def test_usage_return_codes(redis: Redis) -> None:  # noqa: F811
    scripts = Scripts(redis)
    assert await _usage(scripts, "r1:1.a", report(1, 0.5)) == [0]  # no such run
    await redis.hset(keys.run(RUN), "status", "Running")
    applied = await _usage(scripts, "r1:1.a", report(1, 0.5))
    assert applied[0] == 1 and float(applied[2]) == 0.5 and applied[3] == 10
    assert orjson.loads(applied[1]) == {"m": {"input_tokens": 10, "output_tokens": 0,
                                              "cost_usd": 0.5}}
    assert await _usage(scripts, "r1:1.a", report(1, 0.5)) == [2]  # the same report again
    grown = await _usage(scripts, "r1:1.a", report(3, 0.75, 30))  # more calls: the difference
    assert orjson.loads(grown[1])["m"]["cost_usd"] == 0.25 and grown[3] == 30
    assert await redis.hget(keys.function_usage("f", 0), "runs") == b"1"


async def test_heartbeat_return_codes(redis: Redis) -> None:  # noqa: F811
    scripts = Scripts(redis)
    beat = keys.call_beat("r1:1.a")
    assert await scripts("heartbeat", [keys.queue(0).leases, beat], ["r1:1", NOW, 60_000]) == 0
    assert await redis.get(beat) is None
    await redis.hset(keys.queue(0).leases, "r1:1", "token")
    assert await scripts("heartbeat", [keys.queue(0).leases, beat], ["r1:1", NOW, 60_000]) == 1
    assert await redis.get(beat) == str(NOW).encode()


async def test_stall_return_codes(redis: Redis) -> None:  # noqa: F811
    scripts = Scripts(redis)

    async def stall(action: str, since: Any = "", reason: str = "") -> list[Any]:
        out: list[Any] = await scripts("stall", [keys.run(RUN), keys.runs_stalled(0)],
                                       [action, RUN, since, reason])
        return out

    assert await stall("flag", NOW, "why") == [2]  # not running
    await redis.hset(keys.run(RUN), "status", "Running")
    assert await stall("clear") == [0]  # not flagged
    assert await stall("flag", NOW, "why") == [1, str(NOW).encode()]
    assert await stall("flag", NOW + 5, "later") == [1, str(NOW).encode()]  # event not sent
    assert await stall("sent", NOW + 5) == [0]  # another stall's since
    assert await stall("sent", NOW) == [1]
    assert await stall("sent", NOW) == [2]
    assert await stall("flag", NOW + 9, "again") == [0, str(NOW).encode()]
    assert await stall("clear", NOW + 9) == [0]  # another stall: kept
    assert await redis.zscore(keys.runs_stalled(0), RUN) == NOW
    assert await stall("clear", NOW) == [1]
    assert await redis.zscore(keys.runs_stalled(0), RUN) is None
    assert await redis.hget(keys.run(RUN), "stalled_since") is None
