"""Reads for the REST API and the dashboard: runs, their steps, events, apps, functions.
Never writes.

Costs (the dashboard shows at most a page of rows; every read below is pipelined, so a page
is a few round trips, never one per row):

- `runs_page` unfiltered (optionally by time range): O(log N) to find where the page starts
  in the `il:runs` zset (ZREVRANK of the cursor's run, ZCOUNT for a time bound), then
  ZREVRANGE of one page, then two commands per row shown (HMGET of the run's fields, GETRANGE
  of the first bytes of its event for the event's name). Page 1 and page 5,000 cost the same.
- `runs_page` filtered by function, status or a search of the trigger event: there is no
  secondary index, so it examines runs newest first from the cursor, in pipelined batches of
  `SCAN_BATCH` (HMGET of function and status per run, then HGET of the event JSON for the
  runs that pass, only when searching), until a page of matches or `SCAN_BUDGET` runs were
  examined. A search for rare values in a big store therefore answers "searched the newest
  K runs, none matched; continue" and hands back a cursor to continue older. Cost per
  request: O(examined) commands, bounded by the budget.
- `run_detail`: two round trips whatever the number of steps (the run's hashes and list, then
  the state of its next queue item).
- `function_stats`: the runs started in the last day, newest first, at most `STATS_SAMPLE`
  of them (one ZREVRANGEBYSCORE + one HMGET each); the page says when it sampled.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from . import keys

RUN_STATUSES = ("Running", "Completed", "Failed", "Cancelled")
ROW_FIELDS = ("run_id", "function_id", "app_id", "event_id", "status", "started_at",
              "ended_at", "rerun_of")
EVENT_HEAD_BYTES = 4096  # enough for any event name (512 chars, escaped) and a data preview
SCAN_BATCH = 500
SCAN_BUDGET = 5000
STATS_SAMPLE = 5000
LIVE_LOOKBACK_MS = 5000  # a run written late with an older score is still seen live


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    if value is None or value in (b"", ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


PENDING_STEP = {"Sleeping", "Waiting", "Invoking", "Retrying"}


def _step_status(rec: dict[str, Any], run_ended_ms: int | None, run_status: str) -> str:
    """A step record's status as of now: records of sleeps are not rewritten at wake-up,
    and a step still pending when its run ended (cancelled, failed) ends with the run."""
    status = str(rec.get("status", ""))
    if status == "Sleeping":
        until = int(rec.get("until") or 0)
        if run_ended_ms is not None:
            return "Completed" if until <= run_ended_ms else run_status
        return "Completed" if until <= time.time() * 1000 else status
    if status in PENDING_STEP and run_ended_ms is not None:
        return run_status
    return status


def _readable_reason(reason: str) -> str | None:
    """Scripts write times as unix ms ("throttled until 1795..."): show them as ISO 8601."""
    if not reason:
        return None
    return re.sub(r"until (\d{12,})(?:\.\d+)?", lambda m: f"until {_iso(int(m.group(1)))}",
                  reason)


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
        # why a running run is not moving: flow control, set and cleared by the scripts
        "waiting_reason": _readable_reason(get("waiting_reason"))
        if get("status") == "Running" else None,
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


# -- the head of a stored event ------------------------------------------------------------
def event_head(head: bytes | None) -> tuple[str | None, str, bool]:
    """(name, data preview) from the first bytes of a stored event JSON. Events are stored as
    `{"name": ..., "data": {...}, ...}` (name first), so GETRANGE of a few KiB is enough to
    list events and runs without reading whole payloads (up to 512 KiB each). The last item
    says whether the preview is the whole data."""
    if not head:
        return None, "", True
    text = head.decode(errors="ignore")
    if not text.startswith('{"name":'):
        return None, "", True
    try:
        name, end = json.JSONDecoder().raw_decode(text, len('{"name":'))
    except ValueError:
        return None, "", False
    rest = text[end:]
    preview, complete = "", True
    if rest.startswith(',"data":'):
        try:
            data, _ = json.JSONDecoder().raw_decode(rest, len(',"data":'))
            preview = orjson.dumps(data).decode()
        except ValueError:  # cut by the byte limit: show what there is
            preview, complete = rest[len(',"data":'):], False
    return (name if isinstance(name, str) else None), preview, complete


# -- search inside the trigger event ---------------------------------------------------------
_CLAUSE = re.compile(
    r"^\s*(?:event\.)?([A-Za-z_$][\w$-]*(?:\.[\w$-]+)*)\s*(==|=|!=|>=|<=|>|<)\s*(.+?)\s*$")
_AND = re.compile(r"\s+(?:and|AND|&&)\s+")
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: Any
    raw: str

    def matches(self, event: Any) -> bool:
        found = _lookup(event, self.path)
        if self.op == "!=":
            return found is _MISSING or not _equal(found, self.value, self.raw)
        if found is _MISSING:
            return False
        if self.op == "=":
            return _equal(found, self.value, self.raw)
        return _compare(found, self.op, self.value)


@dataclasses.dataclass(frozen=True)
class Search:
    """`data.user_id = 42` (clauses joined by `and`; `=`, `!=`, `<`, `<=`, `>`, `>=`;
    paths relative to the event, `event.` optional; values are JSON, or bare text) or free
    text, matched case-insensitively against the event's JSON and its string values."""

    clauses: tuple[Clause, ...] = ()
    text: str = ""

    def matches(self, event: Any, raw: bytes | str | None = None) -> bool:
        if self.clauses:
            return all(c.matches(event) for c in self.clauses)
        if not self.text:
            return True
        whole = (raw.decode(errors="replace") if isinstance(raw, bytes)
                 else raw if raw is not None else orjson.dumps(event).decode())
        if self.text in whole.lower():
            return True
        return any(self.text in s.lower() for s in _strings(event))

    def describe(self) -> str:
        if self.clauses:
            return " and ".join(f"{'.'.join(c.path)} {c.op} {c.raw}" for c in self.clauses)
        return self.text


def parse_search(text: str | None) -> Search | None:
    text = (text or "").strip()
    if not text:
        return None
    clauses = []
    for part in _AND.split(text):
        m = _CLAUSE.match(part)
        if not m:
            return Search(text=text.lower())
        raw = m.group(3).strip()
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw[1:-1] if len(raw) > 1 and raw[0] == raw[-1] == "'" else raw
        clauses.append(Clause(tuple(m.group(1).split(".")), "=" if m.group(2) == "==" else
                              m.group(2), value, raw))
    return Search(clauses=tuple(clauses))


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _equal(found: Any, expected: Any, raw: str) -> bool:
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected or _scalar_text(found) == raw
    return bool(found == expected) or _scalar_text(found) == raw or _scalar_text(found) == str(
        expected)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(found: Any, op: str, expected: Any) -> bool:
    left, right = _number(found), _number(expected)
    a: Any
    b: Any
    if left is not None and right is not None:
        a, b = left, right
    elif isinstance(found, str) and isinstance(expected, str):
        a, b = found, expected
    else:
        return False
    return bool({">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op])


def _strings(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# -- queries and pages ---------------------------------------------------------------------
@dataclasses.dataclass
class RunQuery:
    function_id: str | None = None
    status: str | None = None
    since_ms: int | None = None  # started at or after
    until_ms: int | None = None  # started at or before
    search: Search | None = None

    @property
    def filtered(self) -> bool:
        """True when rows must be examined (status or search: no index for those); a
        function has its own index of runs."""
        return bool(self.status or self.search)

    def accepts(self, row: dict[str, Any]) -> bool:
        """Function and status (the search needs the event: see `_search_rows`)."""
        if self.function_id and row.get("function_id") != self.function_id:
            return False
        return not (self.status and row.get("status") != self.status)


@dataclasses.dataclass
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None = None  # older rows exist: pass this back as `cursor`
    examined: int = 0  # runs examined (filtered pages)
    partial: bool = False  # the scan budget ran out before a full page was found
    oldest_examined_ms: int | None = None


def make_cursor(score: float | int, member: str) -> str:
    return f"{int(score)}.{member}"


def split_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    score, _, member = cursor.partition(".")
    if not member or not (score.isascii() and score.isdigit()):  # "²".isdigit() is true
        return None
    return int(score), member


def _row(run_id: str, score: float | None, values: Sequence[Any]) -> dict[str, Any] | None:
    fields = dict(zip(ROW_FIELDS, values, strict=True))
    if fields["status"] is None:
        return None  # gone
    started, ended = _int(fields["started_at"]), _int(fields["ended_at"])
    return {
        "run_id": run_id,
        "function_id": _text(fields["function_id"] or b""),
        "app_id": _text(fields["app_id"] or b""),
        "event_id": _text(fields["event_id"] or b""),
        "status": _text(fields["status"]),
        "rerun_of": _text(fields["rerun_of"]) if fields["rerun_of"] else None,
        "started_ms": started,
        "ended_ms": ended,
        "duration_ms": (ended - started) if started and ended else None,
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "score": int(score) if score is not None else started,
        "event_name": None,
    }


class ReadModel:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    # -- the API's reads (unchanged shapes) ------------------------------------------------
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
            pipe.hmget(keys.run(run_id), ["status", "ended_at"])
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            pipe.lrange(keys.run_stack(run_id), 0, -1)
            (status, ended), records, memos, stack = await pipe.execute()
        if status is None:
            return None
        run_status = _text(status)
        ended_ms = int(ended or 0) if run_status != "Running" else None
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
            rec["status"] = _step_status(rec, ended_ms, run_status)
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

    async def event_run_rows(self, event_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """Light rows (see `run_rows`) of the runs an event started."""
        run_ids = await self.redis.lrange(keys.event_runs(event_id), 0, limit - 1)
        return await self.run_rows([_text(r) for r in run_ids])

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

    # -- run rows (the dashboard's lists) ----------------------------------------------------
    async def run_rows(self, run_ids: Sequence[str],
                       scores: Sequence[float | None] | None = None) -> list[dict[str, Any]]:
        """Light rows for lists: two pipelined commands per run (HMGET of its fields, then
        GETRANGE of its event's first bytes for the event name), never the whole event."""
        if not run_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hmget(keys.run(run_id), list(ROW_FIELDS))
            values = await pipe.execute()
        rows = []
        for i, run_id in enumerate(run_ids):
            row = _row(run_id, scores[i] if scores else None, values[i])
            if row is not None:
                rows.append(row)
        await self._name_rows(rows)
        return rows

    async def _name_rows(self, rows: list[dict[str, Any]]) -> None:
        with_event = [r for r in rows if r["event_id"]]
        if not with_event:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in with_event:
                pipe.getrange(keys.event(row["event_id"]), 0, EVENT_HEAD_BYTES - 1)
            heads = await pipe.execute()
        for row, head in zip(with_event, heads, strict=True):
            row["event_name"] = event_head(head)[0]

    async def _start_rank(self, index: str, cursor: str | None, until_ms: int | None) -> int:
        """Where a newest-first page starts in `index`: after the cursor's member (its rank,
        O(log N)), and not before `until_ms`. A cursor whose member is gone falls back to its
        score."""
        parsed = split_cursor(cursor)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrevrank(index, parsed[1] if parsed else "")
            pipe.zcount(index, f"({parsed[0]}" if parsed else "+inf", "+inf")
            pipe.zcount(index, f"({until_ms}" if until_ms is not None else "+inf", "+inf")
            rank, above_cursor, above_until = await pipe.execute()
        start = 0
        if parsed:
            start = int(rank) + 1 if rank is not None else int(above_cursor)
        return max(start, int(above_until) if until_ms is not None else 0)

    async def _slice(self, index: str, start: int, count: int,
                     since_ms: int | None) -> tuple[list[tuple[str, float]], bool]:
        """`count` members newest first from rank `start`, stopping below `since_ms`; and
        whether the index ends (or the time range does) within this slice."""
        got: Any = await self.redis.zrevrange(index, start, start + count - 1, withscores=True)
        out = [(_text(m), float(s)) for m, s in got]
        ended = len(out) < count
        if since_ms is not None and any(s < since_ms for _, s in out):
            out = [(m, s) for m, s in out if s >= since_ms]
            ended = True
        return out, ended

    async def runs_page(self, query: RunQuery, cursor: str | None = None,
                        limit: int = 50) -> Page:
        """A page of runs newest first, from `cursor` (the last row of the previous page)."""
        # a function's own index makes filtering by function as cheap as no filter
        index = keys.runs_of_function(query.function_id) if query.function_id else keys.RUNS
        start = await self._start_rank(index, cursor, query.until_ms)
        if not query.filtered:
            members, _ = await self._slice(index, start, limit + 1, query.since_ms)
            shown = members[:limit]
            rows = await self.run_rows([m for m, _ in shown], [s for _, s in shown])
            more = len(members) > limit
            nxt = make_cursor(shown[-1][1], shown[-1][0]) if more and shown else None
            return Page(rows, nxt, examined=len(shown))
        return await self._scan(query, index, start, limit)

    async def _scan(self, query: RunQuery, index: str, start: int, limit: int) -> Page:
        found: list[dict[str, Any]] = []
        examined = 0
        last: tuple[str, float] | None = None
        ended = False
        while len(found) <= limit and examined < SCAN_BUDGET and not ended:
            count = min(SCAN_BATCH, SCAN_BUDGET - examined)
            members, ended = await self._slice(index, start + examined, count, query.since_ms)
            if not members:
                ended = True
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for member, _ in members:
                    pipe.hmget(keys.run(member), list(ROW_FIELDS))
                values = await pipe.execute()
            batch = []
            for (member, score), vals in zip(members, values, strict=True):
                row = _row(member, score, vals)
                if row is not None and query.accepts(row):
                    batch.append(row)
            if query.search is not None:
                batch = await self._search_rows(batch, query.search)
            # the rows of this batch in index order; stop exactly after the row that fills
            # the page (+1 to know there is more), so the cursor is exact
            positions = {m: i for i, (m, _) in enumerate(members)}
            for row in batch:
                found.append(row)
                if len(found) > limit:
                    stop = positions[row["run_id"]]
                    examined += stop + 1
                    last = members[stop]
                    break
            else:
                examined += len(members)
                last = members[-1]
        shown = found[:limit]
        await self._name_rows(shown)
        if len(found) > limit:
            nxt = make_cursor(shown[-1]["score"], shown[-1]["run_id"])
            return Page(shown, nxt, examined, oldest_examined_ms=int(last[1]) if last else None)
        if not ended and examined >= SCAN_BUDGET:
            ended = not (await self._slice(index, start + examined, 1, query.since_ms))[0]
        partial = not ended and examined >= SCAN_BUDGET and last is not None
        resume = make_cursor(last[1], last[0]) if partial and last else None
        return Page(shown, resume, examined, partial=partial,
                    oldest_examined_ms=int(last[1]) if last else None)

    async def _search_rows(self, rows: list[dict[str, Any]],
                           search: Search) -> list[dict[str, Any]]:
        if not rows:
            return rows
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in rows:
                pipe.hget(keys.run(row["run_id"]), "event")
            raws = await pipe.execute()
        out = []
        for row, raw in zip(rows, raws, strict=True):
            if raw and search.matches(orjson.loads(raw), raw):
                out.append(row)
        return out

    async def runs_after(self, after_ms: int, seen: set[str], query: RunQuery,
                         limit: int = 100) -> list[dict[str, Any]]:
        """Runs started since `after_ms` (minus a small lookback, minus `seen`), oldest first,
        for the live list. Applies function and search filters (not status: a new run is
        Running, and the live list watches it until it ends)."""
        got: Any = await self.redis.zrangebyscore(keys.RUNS, after_ms - LIVE_LOOKBACK_MS, "+inf",
                                             start=0, num=limit + len(seen), withscores=True)
        fresh = [(_text(m), float(s)) for m, s in got if _text(m) not in seen][:limit]
        if query.until_ms is not None:
            fresh = [(m, s) for m, s in fresh if s <= query.until_ms]
        rows = await self.run_rows([m for m, _ in fresh], [s for _, s in fresh])
        if query.function_id:
            rows = [r for r in rows if r["function_id"] == query.function_id]
        if query.search is not None:
            rows = await self._search_rows(rows, query.search)
        return rows

    # -- one run ---------------------------------------------------------------------------
    async def run_detail(self, run_id: str, now_ms: int) -> dict[str, Any] | None:
        """A run with its trigger event, steps (outputs and errors included), and the state of
        its next call in the queue: two round trips."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.run(run_id))
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            pipe.lrange(keys.run_stack(run_id), 0, -1)
            fields, records, memos, stack = await pipe.execute()
        if not fields:
            return None
        run = run_view(fields)
        started = _int(fields.get(b"started_at")) or 0
        ended = _int(fields.get(b"ended_at"))
        run.update(started_ms=started, ended_ms=ended,
                   duration_ms=(ended - started) if ended else None,
                   rerun_of=_text(fields[b"rerun_of"]) if fields.get(b"rerun_of") else None,
                   output_bytes=len(fields.get(b"output") or b""))
        event = orjson.loads(fields[b"event"]) if fields.get(b"event") else None
        batch = orjson.loads(fields[b"events"]) if fields.get(b"events") else []
        seq = _int(fields.get(b"seq"))
        queue: dict[str, Any] = {"state": None}
        if run["status"] == "Running" and seq is not None:
            item_id = f"{run_id}:{seq}"
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys.QUEUE_ITEMS, item_id)
                pipe.zscore(keys.QUEUE_READY, item_id)
                pipe.zscore(keys.QUEUE_LEASED, item_id)
                item_raw, due, lease = await pipe.execute()
            if item_raw:
                item = orjson.loads(item_raw)
                queue = {"item_id": item_id, "attempt": int(item.get("attempt") or 0),
                         "max_attempts": item.get("max_attempts"),
                         "step_id": item.get("step_id")}
                if lease is not None:
                    queue.update(state="running", lease_until_ms=int(lease))
                elif due is not None:
                    queue.update(state="queued" if due <= now_ms else "scheduled",
                                 due_ms=int(due))
                else:
                    queue.update(state="held")  # flow control (concurrency) holds it back
        order = {_text(h): i for i, h in enumerate(stack)}
        steps = []
        for hashed, raw in records.items():
            rec = orjson.loads(raw)
            key = _text(hashed)
            memo = memos.get(hashed)
            step: dict[str, Any] = {
                "hash": key, "id": rec.get("id", key), "name": rec.get("name") or key,
                "op": rec.get("op"), "status": rec.get("status"),
                "attempts": rec.get("attempts") or 0,
                "started_ms": _int(rec.get("started_at")), "ended_ms": _int(rec.get("ended_at")),
                "until_ms": _int(rec.get("until")), "retry_at_ms": _int(rec.get("retry_at")),
                "waiting_for": rec.get("waiting_for"), "expression": rec.get("expression"),
                "function": rec.get("function"), "timed_out": bool(rec.get("timed_out")),
                "reused_from": rec.get("reused_from"), "matched": rec.get("matched"),
                "order": order.get(key), "memo_bytes": len(memo) if memo else 0,
                "has_output": False, "output": None, "error": rec.get("error"),
            }
            value = orjson.loads(memo) if memo else None
            if isinstance(value, dict) and "data" in value:
                step.update(has_output=True, output=value["data"])
            elif isinstance(value, dict) and "error" in value:
                step["error"] = value["error"]
            if step["status"] == "Sleeping" and (step["until_ms"] or 0) <= now_ms:
                step["status"] = "Completed"  # the sleep is over (its record is not rewritten)
            if run["status"] != "Running" and step["status"] in (
                    "Waiting", "Sleeping", "Invoking", "Retrying"):
                step["interrupted"] = step["status"]
                step["status"] = run["status"]  # the run ended while this step was pending
            steps.append(step)
        big = len(order) + len(steps)
        steps.sort(key=lambda s: (s["order"] if s["order"] is not None else big,
                                  s["started_ms"] or 0))
        return {"run": run, "event": event, "batch": batch, "steps": steps, "queue": queue,
                "rerunnable": [s for s in steps if s["order"] is not None]}

    async def run_version(self, run_id: str) -> str | None:
        """A fingerprint that changes whenever the run page would: status, step records,
        the next call's schedule. None when the run does not exist."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.run(run_id), ["status", "seq", "last_error", "ended_at"])
            pipe.hgetall(keys.run_steps(run_id))
            head, records = await pipe.execute()
        if head[0] is None:
            return None
        digest = hashlib.sha1(usedforsecurity=False)
        for value in head:
            digest.update(value or b"-")
            digest.update(b"\0")
        for hashed in sorted(records):
            digest.update(hashed + b"=" + records[hashed] + b"\0")
        return f"{_text(head[0])}.{digest.hexdigest()[:16]}"

    async def step_value(self, run_id: str, step_hash: str) -> tuple[bool, Any]:
        """(found, the step's memo: {"data": ...} or {"error": ...}) for "see all"."""
        raw = await self.redis.hget(keys.run_memos(run_id), step_hash)
        return (raw is not None), (orjson.loads(raw) if raw is not None else None)

    async def run_output(self, run_id: str) -> tuple[bool, Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(keys.run(run_id))
            pipe.hget(keys.run(run_id), "output")
            exists, raw = await pipe.execute()
        return bool(exists), (orjson.loads(raw) if raw else None)

    # -- events ----------------------------------------------------------------------------
    async def event_rows(self, members: Sequence[tuple[str, float]],
                         runs_per_event: int = 5) -> list[dict[str, Any]]:
        """Light event rows: name and a data preview from the event's first bytes, its size,
        and the first runs it started with their status. Two round trips, four commands per
        event plus one per run listed."""
        if not members:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id, _ in members:
                pipe.getrange(keys.event(event_id), 0, EVENT_HEAD_BYTES - 1)
                pipe.strlen(keys.event(event_id))
                pipe.lrange(keys.event_runs(event_id), 0, runs_per_event - 1)
                pipe.llen(keys.event_runs(event_id))
            values = await pipe.execute()
        rows: list[dict[str, Any]] = []
        run_ids: list[str] = []
        for i, (event_id, score) in enumerate(members):
            head, size, runs, count = values[4 * i: 4 * i + 4]
            if not size:
                continue
            name, preview, complete = event_head(head)
            ids = [_text(r) for r in runs]
            run_ids.extend(ids)
            rows.append({"id": event_id, "name": name, "received_ms": int(score),
                         "received_at": _iso(int(score)), "preview": preview,
                         "bytes": int(size), "truncated": not complete,
                         "run_ids": ids, "run_count": int(count), "runs": []})
        if run_ids:
            async with self.redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.hmget(keys.run(run_id), ["function_id", "status"])
                found = dict(zip(run_ids, await pipe.execute(), strict=True))
            for row in rows:
                row["runs"] = [{"run_id": r, "function_id": _text(found[r][0] or b""),
                                "status": _text(found[r][1] or b"")}
                               for r in row.pop("run_ids") if found[r][1] is not None]
        else:
            for row in rows:
                row.pop("run_ids")
        return rows

    async def events_page(self, name: str | None = None, cursor: str | None = None,
                          limit: int = 50) -> Page:
        index = keys.events_by_name(name) if name else keys.EVENTS
        start = await self._start_rank(index, cursor, None)
        members, _ = await self._slice(index, start, limit + 1, None)
        shown = members[:limit]
        rows = await self.event_rows(shown)
        more = len(members) > limit
        nxt = make_cursor(shown[-1][1], shown[-1][0]) if more and shown else None
        return Page(rows, nxt, examined=len(shown))

    async def events_after(self, after_ms: int, seen: set[str], name: str | None = None,
                           limit: int = 100) -> list[dict[str, Any]]:
        index = keys.events_by_name(name) if name else keys.EVENTS
        got: Any = await self.redis.zrangebyscore(index, after_ms - LIVE_LOOKBACK_MS, "+inf",
                                             start=0, num=limit + len(seen), withscores=True)
        fresh = [(_text(m), float(s)) for m, s in got if _text(m) not in seen][:limit]
        return await self.event_rows(fresh)

    # -- functions -------------------------------------------------------------------------
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
