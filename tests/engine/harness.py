"""The whole executor in-process, over a fake driver, an injected clock and a fake (or real)
Redis: the op switch and every script's return codes tested in milliseconds with
`Worker.run_until_idle`, no sockets, no sleeps."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from executor import keys
from executor.driver import CallError, Completed, Ops, Outcome
from executor.events import IncomingEvent
from executor.service import Executor, Settings
from executor.tracing import Tracing

APP_URL = "http://app.test/api/inngest"
START_MS = 1_800_000_000_000


async def total(redis: Redis, index: Callable[[int], str]) -> int:
    """The members of an index (keys.runs, keys.outbox, ...) summed over every shard."""
    return sum([int(await redis.zcard(index(shard))) for shard in keys.shards()])


async def members(redis: Redis, index: Callable[[int], str]) -> set[bytes]:
    """The members of a zset index over every shard."""
    return {m for shard in keys.shards() for m in await redis.zrange(index(shard), 0, -1)}


def step_run(hashed: str, data: Any = None, name: str = "") -> dict[str, Any]:
    return {"op": "StepRun", "id": hashed, "name": name or hashed, "data": data}


def ops(*answer: dict[str, Any], retry_after: str | None = None,
        no_retry: bool = False) -> Ops:
    return Ops(list(answer), retry_after, no_retry, None)


def error(message: str, retriable: bool = True) -> CallError:
    return CallError(message, {"name": "Error", "message": message}, retriable)


@dataclasses.dataclass
class Call:
    """One request the executor made, decoded."""

    run_id: str
    step_id: str
    attempt: int
    steps: dict[str, Any]
    event: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    qi_id: str = ""  # the queue item (a checkpoint names its call by it and the lease)
    plan_only: bool = False  # ctx.disable_immediate_execution (an eager first call)

    @property
    def call_id(self) -> str:
        return self.headers["X-Inngest-Like-Call"]


Answer = Callable[[Call], Outcome | Awaitable[Outcome]]


class FakeDriver:
    """Answers each call with `answer(call)` (or what it awaits: an app that takes its time)
    and records it: the app, without HTTP."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[Call] = []

    async def call(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        req = orjson.loads(body)
        call = Call(req["ctx"]["run_id"], req["ctx"]["step_id"], req["ctx"]["attempt"],
                    req["steps"], req["event"], dict(headers), req["ctx"].get("qi_id", ""),
                    bool(req["ctx"].get("disable_immediate_execution")))
        self.calls.append(call)
        out = self.answer(call)
        return await out if inspect.isawaitable(out) else out


class Clock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class Engine:
    """An executor with a fake app: sync functions, send events, run until idle."""

    def __init__(self, redis: Redis, answer: Answer | None = None,
                 tracing: Tracing | None = None, **settings: Any) -> None:
        self.redis = redis
        self.clock = Clock()
        self.driver = FakeDriver(answer or (lambda call: Completed(None)))
        self.executor = Executor(redis, Settings(run_worker=False, retry_interval_s=1.0,
                                                 **settings), self.clock, tracing)
        self.executor.worker.driver = self.driver
        self.sent = 0

    def answer(self, fn: Answer) -> None:
        self.driver.answer = fn

    async def sync(self, *functions: dict[str, Any]) -> None:
        await self.executor.scripts.load_all()
        body = {"appName": "app", "url": APP_URL, "functions": [
            {"name": f["id"], "triggers": [{"event": "test/go"}],
             "steps": {"step": {"id": "step", "name": "step",
                                "runtime": {"type": "http", "url": f"{APP_URL}?fnId={f['id']}"}}},
             **f} for f in functions]}
        await self.executor.registry.sync(body, orjson.dumps(body), self.clock())

    async def send(self, data: dict[str, Any] | None = None, name: str = "test/go",
                   event_id: str = "") -> list[str]:
        self.sent += 1
        event = IncomingEvent(self.event_id(self.sent),
                              {"name": name, "data": data or {}, "id": event_id,
                               "ts": self.clock(), "user": {}}, event_id)
        return await self.executor.ingest.accept([event])

    def event_id(self, n: int) -> str:
        """The id of the n-th event sent: a ULID, as the API gives, whose time orders the
        events (and the runs, whose ids take their event's time) by when they were sent."""
        return str(ULID.from_bytes((START_MS + n).to_bytes(6, "big") + n.to_bytes(10, "big")))

    async def run_until_idle(self) -> None:
        await self.executor.worker.run_until_idle()

    async def run(self, run_id: str) -> dict[str, Any]:
        fields: Any = await self.redis.hgetall(keys.run(run_id))
        out = {k.decode(): v.decode() for k, v in fields.items()}
        if "output" in out:
            out["output"] = orjson.loads(out["output"])
        return out
