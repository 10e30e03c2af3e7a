"""Synced apps and their functions: validated at sync, stored in Redis, cached per process.

Every process keeps the function set in memory and reloads it when the registry version in
Redis moves (any process's sync bumps it), so matching an event costs no Redis reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from . import agent_options, cron, durations, expressions, flow, keys, pause_index
from .agent_options import AgentOptions
from .flow import FlowControl

log = logging.getLogger("inngest_like.executor")

DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_TRIGGERS = 10
MAX_CANCELS = 5
DEFAULT_CANCEL_TIMEOUT_MS = 365 * 24 * 3600 * 1000


class SyncError(ValueError):
    """A sync payload is wrong; the message names the function and the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class CancelOn:
    event: str
    expression: str | None
    timeout_ms: int


@dataclasses.dataclass
class FunctionConfig:
    id: str
    name: str
    app_id: str
    url: str
    events: list[tuple[str, str | None]]  # (name pattern, CEL expression)
    crons: list[str]
    max_attempts: int
    raw: dict[str, Any]
    cancel: list[CancelOn] = dataclasses.field(default_factory=list)
    timeout_start_ms: int | None = None
    timeout_finish_ms: int | None = None
    flow: FlowControl = dataclasses.field(default_factory=FlowControl)
    agent: AgentOptions = dataclasses.field(default_factory=AgentOptions)  # budget, timeouts

    def matches(self, event: dict[str, Any]) -> bool:
        name = str(event.get("name", ""))
        return any(
            _name_matches(pattern, name) and expressions.matches(expr, {"event": event})
            for pattern, expr in self.events
        )

    def subscribes(self, event_name: str) -> bool:
        return any(_name_matches(pattern, event_name) for pattern, _ in self.events)


def _name_matches(pattern: str, name: str) -> bool:
    if "*" not in pattern:
        return pattern == name
    regex = "^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$"
    return re.match(regex, name) is not None


def _field(fn_id: str, field: str, problem: str) -> SyncError:
    return SyncError(f"function {fn_id!r}: {field}: {problem}")


def parse_function(raw: Any, app_id: str, index: int) -> FunctionConfig:
    if not isinstance(raw, dict):
        raise SyncError(f"functions[{index}]: must be an object")
    fn_id = raw.get("id")
    if not isinstance(fn_id, str) or not fn_id:
        raise SyncError(f"functions[{index}].id: must be a non-empty string")
    triggers = raw.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        raise _field(fn_id, "triggers", "must be a non-empty list")
    if len(triggers) > MAX_TRIGGERS:
        raise _field(fn_id, "triggers", f"at most {MAX_TRIGGERS} triggers")
    events: list[tuple[str, str | None]] = []
    crons: list[str] = []
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger, dict):
            raise _field(fn_id, f"triggers[{i}]", "must be an object")
        if isinstance(trigger.get("event"), str) and trigger["event"]:
            expr = trigger.get("expression") or None
            _check_expression(fn_id, f"triggers[{i}].expression", expr)
            events.append((trigger["event"], expr))
        elif isinstance(trigger.get("cron"), str) and trigger["cron"]:
            try:
                cron.Schedule.parse(trigger["cron"])
            except ValueError as exc:
                raise _field(fn_id, f"triggers[{i}].cron", str(exc)) from None
            crons.append(trigger["cron"])
        else:
            raise _field(fn_id, f"triggers[{i}]", "needs a non-empty 'event' or 'cron'")
    cancel = _parse_cancel(fn_id, raw.get("cancel"))
    timeouts = raw.get("timeouts") or {}
    if not isinstance(timeouts, dict):
        raise _field(fn_id, "timeouts", "must be an object")
    try:
        flow_control = flow.parse(raw)
    except flow.FlowError as exc:
        raise _field(fn_id, str(exc).split(":", 1)[0], str(exc).split(":", 1)[1].strip()) from None
    try:
        agent = agent_options.parse(raw)
    except agent_options.AgentOptionError as exc:
        raise _field(fn_id, exc.field, exc.problem) from None
    start_ms = _duration(fn_id, "timeouts.start", timeouts.get("start"))
    finish_ms = _duration(fn_id, "timeouts.finish", timeouts.get("finish"))
    step = (raw.get("steps") or {}).get("step") if isinstance(raw.get("steps"), dict) else None
    url = ((step or {}).get("runtime") or {}).get("url") if isinstance(step, dict) else None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _field(fn_id, "steps.step.runtime.url", "must be an http(s) URL")
    retries = ((step or {}).get("retries") or {}).get("attempts", DEFAULT_RETRIES)
    if retries is None:
        retries = DEFAULT_RETRIES
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise _field(fn_id, "steps.step.retries.attempts", f"must be an integer 0..{MAX_RETRIES}")
    return FunctionConfig(
        id=fn_id,
        name=str(raw.get("name") or fn_id),
        app_id=app_id,
        url=url,
        events=events,
        crons=crons,
        max_attempts=retries + 1,
        raw=raw,
        cancel=cancel,
        timeout_start_ms=start_ms,
        timeout_finish_ms=finish_ms,
        flow=flow_control,
        agent=agent,
    )


def _check_expression(fn_id: str, field: str, source: Any) -> None:
    if source is None:
        return
    if not isinstance(source, str):
        raise _field(fn_id, field, "must be a string (a CEL expression)")
    try:
        expressions.validate(source)
    except expressions.ExpressionError as exc:
        raise _field(fn_id, field, f"invalid CEL expression: {exc}") from None


def _duration(fn_id: str, field: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _field(fn_id, field, "must be a duration string like 30s, 5m, 1h")
    try:
        return durations.parse_ms(value)
    except ValueError as exc:
        raise _field(fn_id, field, str(exc)) from None


def _parse_cancel(fn_id: str, raw: Any) -> list[CancelOn]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _field(fn_id, "cancel", "must be a list")
    if len(raw) > MAX_CANCELS:
        raise _field(fn_id, "cancel", f"at most {MAX_CANCELS} entries")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("event"), str):
            raise _field(fn_id, f"cancel[{i}].event", "must be a non-empty string")
        _check_expression(fn_id, f"cancel[{i}].if", entry.get("if"))
        timeout = _duration(fn_id, f"cancel[{i}].timeout", entry.get("timeout"))
        out.append(CancelOn(entry["event"], entry.get("if") or None,
                            timeout or DEFAULT_CANCEL_TIMEOUT_MS))
    return out


def _crons_of(config: Any) -> list[str]:
    """The cron sources of a stored function config (validated when it was synced)."""
    triggers = config.get("triggers") if isinstance(config, dict) else None
    return [t["cron"] for t in triggers or [] if isinstance(t, dict)
            and isinstance(t.get("cron"), str) and t["cron"]]


def parse_sync(body: Any) -> tuple[str, str, list[FunctionConfig]]:
    """(app id, app url, functions) from a `/fn/register` body, both key spellings accepted."""
    if not isinstance(body, dict):
        raise SyncError("body: must be a JSON object")
    app_id = body.get("appName", body.get("appname"))
    if not isinstance(app_id, str) or not app_id:
        raise SyncError("appName: must be a non-empty string")
    url = body.get("url")
    if not isinstance(url, str) or not url:
        raise SyncError("url: must be a non-empty string")
    functions = body.get("functions")
    if functions is None:
        functions = []
    if not isinstance(functions, list):
        raise SyncError("functions: must be a list")
    parsed = [parse_function(raw, app_id, i) for i, raw in enumerate(functions)]
    ids = [fn.id for fn in parsed]
    if len(set(ids)) != len(ids):
        raise SyncError("functions: two functions share one id")
    return app_id, url, parsed


class Registry:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.version: int | None = None
        self.functions: dict[str, FunctionConfig] = {}
        self._cancel_paths: set[tuple[str, str]] = set()  # (event name, path) registered

    async def refresh(self, version: int | None = None) -> None:
        """Reload the function set if another process synced since we last looked."""
        if version is None:
            version = int(await self.redis.get(keys.REGISTRY_VERSION) or 0)
        if version == self.version:
            return
        raw = await self.redis.hgetall(keys.FUNCTIONS)
        functions = {}
        for value in raw.values():
            try:
                stored = orjson.loads(value)
                fn = parse_function(stored["config"], stored["app_id"], 0)
            except (SyncError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
                # stored under older, looser rules, or damaged: skip it (its app's next sync
                # says why) rather than fail every event this process takes, or its start
                log.error("a stored function no longer validates and is skipped: %r", exc)
                continue
            functions[fn.id] = fn
        await self._register_cancel_paths(functions.values())
        self.functions = functions
        self.version = version

    async def _register_cancel_paths(self, functions: Iterable[FunctionConfig]) -> None:
        """Add the paths the cancel listeners of these functions may be indexed on to their
        event names' path sets, before any run of them starts (the ingest script stores a
        listener in its bucket but does not touch the path sets)."""
        paths = {(cancel.event, path) for fn in functions for cancel in fn.cancel
                 for path in pause_index.candidate_paths(cancel.expression)}
        if keys.shard_count() > 1:  # and the listeners stored unindexed (pauses.mark_waited)
            paths |= {(cancel.event, pause_index.UNINDEXED)
                      for fn in functions for cancel in fn.cancel}
        paths -= self._cancel_paths
        if not paths:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, path in sorted(paths):
                for shard in keys.shards():  # a run's listeners go to its own shard's
                    pipe.sadd(keys.pause_paths(name, shard), path)
            await pipe.execute()
        self._cancel_paths |= paths

    def unheard(self, event_name: str) -> int | None:
        """The registry version as of which no function is triggered by `event_name`; None
        when one is (or nothing is loaded yet)."""
        if self.version is None:
            return None
        if any(fn.subscribes(event_name) for fn in self.functions.values()):
            return None
        return self.version

    def match(self, event: dict[str, Any]) -> list[FunctionConfig]:
        """Functions whose triggers take this event (name, wildcard, CEL expression)."""
        return [fn for fn in self.functions.values() if fn.matches(event)]

    async def sync(self, body: Any, raw_body: bytes, now_ms: int) -> dict[str, Any]:
        """Store an app and replace its function set. Raises SyncError for a bad payload,
        and for a function id another app owns: an app cannot take over another's
        function (that app must first sync without it)."""
        app_id, url, functions = parse_sync(body)
        checksum = hashlib.sha256(raw_body).hexdigest()
        app = {
            "id": app_id,
            "url": url,
            "sdk": body.get("sdk", ""),
            "framework": body.get("framework", ""),
            "synced_at": now_ms,
            "checksum": checksum,
            "functions": [fn.id for fn in functions],
            "error": None,
        }
        while True:  # optimistic: another process syncing at the same moment makes us retry
            try:
                modified = await self._store(app, functions)
                break
            except WatchError:
                continue
        if modified:
            await self.refresh()
        return {"ok": True, "modified": modified, "sync_id": str(uuid.uuid4()), "app_id": app_id}

    async def _store(self, app: dict[str, Any], functions: list[FunctionConfig]) -> bool:
        app_id = app["id"]
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.watch(keys.APPS, keys.FUNCTIONS)
            previous = await pipe.hget(keys.APPS, app_id)
            old = orjson.loads(previous) if previous else {}
            gone = [f for f in old.get("functions", []) if f not in app["functions"]]
            ids = [fn.id for fn in functions] + gone
            stored = await pipe.hmget(keys.FUNCTIONS, ids) if ids else []
            owners = {i: orjson.loads(v)["app_id"] if v else None
                      for i, v in zip(ids, stored, strict=True)}
            for index, fn in enumerate(functions):
                owner = owners[fn.id]
                if owner is not None and owner != app_id:
                    raise SyncError(f"functions[{index}].id: {fn.id!r} belongs to app "
                                    f"{owner!r}; sync that app without it first", status=409)
            intact = all(owners[fn.id] == app_id for fn in functions)
            if old.get("checksum") == app["checksum"] and not old.get("error") and intact:
                # an identical re-sync (dev polls every few seconds): note the time only
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(keys.APPS, app_id, orjson.dumps(app))
                await pipe.execute()
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(keys.APPS, app_id, orjson.dumps(app))
            mine = [f for f in gone if owners[f] == app_id]  # never another app's
            now = app["synced_at"]
            if mine:
                pipe.hdel(keys.FUNCTIONS, *mine)
                # retention deletes their usage and cron state once the period has passed
                removed = orjson.dumps({"app_id": app_id, "removed_at": now})
                pipe.hset(keys.FUNCTIONS_REMOVED, mapping={f: removed for f in mine})
            if functions:  # back before retention deleted their keys: they keep them
                pipe.hdel(keys.FUNCTIONS_REMOVED, *(fn.id for fn in functions))
            had = {cron.schedule_id(fn_id, source)
                   for fn_id, value in zip(ids, stored, strict=True)
                   if value and owners[fn_id] == app_id
                   for source in _crons_of(orjson.loads(value).get("config"))}
            has = {cron.schedule_id(fn.id, source) for fn in functions for source in fn.crons}
            if had - has:
                pipe.zadd(keys.CRONS_RETIRED, {schedule: now for schedule in had - has})
            if has:
                pipe.zrem(keys.CRONS_RETIRED, *has)
            for fn in functions:
                pipe.hset(
                    keys.FUNCTIONS, fn.id, orjson.dumps({"app_id": app_id, "config": fn.raw})
                )
            pipe.incr(keys.REGISTRY_VERSION)
            version = (await pipe.execute())[-1]
        if keys.shard_count() > 1:
            # each shard's copy, for the check in ingest.lua (a moment behind at most: a
            # piece of ingest in that moment is planned with the set just replaced, as it
            # would have been had it come a moment sooner; a copy left behind, by two syncs
            # writing out of order or a process dying here, is caught up by the next
            # ingest planned with the newer set)
            async with self.redis.pipeline(transaction=False) as copies:
                for shard in range(1, keys.shard_count()):
                    copies.set(keys.registry_version(shard), version)
                await copies.execute()
        return True

    async def record_sync_error(self, url: str, error: str, now_ms: int) -> None:
        """Remember that syncing `url` failed, for the apps list."""
        raw = await self.redis.hgetall(keys.APPS)
        for app_id, value in raw.items():
            app = orjson.loads(value)
            if app.get("url") == url:
                app["error"] = error
                app["error_at"] = now_ms
                await self.redis.hset(keys.APPS, app_id, orjson.dumps(app))
