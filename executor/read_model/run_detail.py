"""One run in detail: its steps, its timeline's facts, its values."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from .. import keys, usage
from .base import Reads
from .views import _int, _iso, _step_status, _text, run_view


def _attempt(raw: dict[str, Any]) -> dict[str, Any]:
    """One attempt of a step, as its record keeps it (lib_record.lua)."""
    return {"n": _int(raw.get("n")) or 0, "start_ms": _int(raw.get("start")),
            "end_ms": _int(raw.get("end")), "queued_ms": _int(raw.get("queued_ms")) or 0,
            "status": raw.get("status"), "error": raw.get("error"),
            "retry_at_ms": _int(raw.get("retry_at"))}


class RunDetail(Reads):
    async def steps(self, run_id: str) -> list[dict[str, Any]] | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.run(run_id), ["status", "ended_at"])
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            pipe.lrange(keys.run_stack(run_id), 0, -1)
            pipe.hgetall(keys.run_usage(run_id))
            (status, ended), records, memos, stack, used = await pipe.execute()
        if status is None:
            return None
        step_usage = usage.steps_view(used)
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
            rec["usage"] = step_usage.get(hashed.decode())
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

    async def run_detail(self, run_id: str, now_ms: int) -> dict[str, Any] | None:
        """A run with its trigger event, steps (outputs and errors included), and the state of
        its next call in the queue: two round trips."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.run(run_id))
            pipe.hgetall(keys.run_steps(run_id))
            pipe.hgetall(keys.run_memos(run_id))
            pipe.lrange(keys.run_stack(run_id), 0, -1)
            pipe.hgetall(keys.run_usage(run_id))
            fields, records, memos, stack, used = await pipe.execute()
        if not fields:
            return None
        step_usage = usage.steps_view(used)
        run = run_view(fields)
        started = _int(fields.get(b"started_at")) or 0
        ended = _int(fields.get(b"ended_at"))
        run.update(started_ms=started, ended_ms=ended,
                   duration_ms=(ended - started) if ended else None,
                   rerun_of=_text(fields[b"rerun_of"]) if fields.get(b"rerun_of") else None,
                   rerun_reason=_text(fields[b"rerun_reason"])
                   if fields.get(b"rerun_reason") else None,
                   output_bytes=len(fields.get(b"output") or b""),
                   queue_ms=_int(fields.get(b"queue_ms")) or 0,
                   exec_ms=_int(fields.get(b"exec_ms")) or 0,
                   measured=b"exec_ms" in fields or b"queue_ms" in fields)
        output = run["output"]
        run["cancelled_by_event"] = (output.get("event_id") if run["status"] == "Cancelled"
                                     and isinstance(output, dict) else None)
        event = orjson.loads(fields[b"event"]) if fields.get(b"event") else None
        batch = orjson.loads(fields[b"events"]) if fields.get(b"events") else []
        seq = _int(fields.get(b"seq"))
        queue: dict[str, Any] = {"state": None}
        if run["status"] == "Running" and seq is not None:
            item_id = f"{run_id}:{seq}"
            queue_keys = keys.queue_of(run_id)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(queue_keys.items, item_id)
                pipe.zscore(queue_keys.ready, item_id)
                pipe.zscore(queue_keys.leased, item_id)
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
                "usage": step_usage.get(key),
                "max_attempts": rec.get("max_attempts"),
                "tries": [_attempt(t) for t in rec.get("tries") or [] if isinstance(t, dict)],
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
                # how long it really lasted: until the run ended, not its planned end
                step["planned_end_ms"] = step["ended_ms"]
                if ended is not None and step["started_ms"] is not None:
                    step["ended_ms"] = max(step["started_ms"], min(step["ended_ms"] or ended,
                                                                   ended))
            step["error_bytes"] = len(orjson.dumps(step["error"])) if step["error"] else 0
            steps.append(step)
        big = len(order) + len(steps)
        steps.sort(key=lambda s: (s["order"] if s["order"] is not None else big,
                                  s["started_ms"] or 0))
        return {"run": run, "event": event, "batch": batch, "steps": steps, "queue": queue,
                "rerunnable": [s for s in steps if s["order"] is not None],
                "links": await self._links(run_id, event)}

    async def _links(self, run_id: str, event: Any) -> dict[str, Any]:
        """Runs related to this one, both ways: its reruns and the run it reran (`rerun_of`
        in the run), the runs its end events started (an `on_failure` handler) and, for a
        run started by another run's end or invoke, that run."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(keys.run_reruns(run_id), 0, 199)
            for suffix in ("failed", "finished", "cancelled"):
                for shard in keys.shards():  # the runs it started, in their own shards
                    pipe.lrange(keys.event_runs(f"{run_id}-{suffix}", shard), 0, 49)
            reruns, *ended = await pipe.execute()
        followers = list(dict.fromkeys(_text(r) for found in ended for r in found))
        data = event.get("data") if isinstance(event, dict) else None
        source = None
        if isinstance(data, dict) and str(event.get("name", "")).startswith("inngest/function."):
            if event.get("name") == "inngest/function.invoked":
                source = ((data.get("_inngest") or {}).get("source_run_id"), "invoked by")
            else:
                source = (data.get("run_id"), "started by the end of")
        return {"reruns": await self.run_rows([_text(r) for r in reruns]),
                "followers": await self.run_rows(followers),
                "source": {"run_id": source[0], "how": source[1]}
                if source and isinstance(source[0], str) and source[0] else None}

    async def run_version(self, run_id: str) -> str | None:
        """A fingerprint that changes whenever the run page would: status, step records,
        the next call's schedule. None when the run does not exist."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.run(run_id), ["status", "seq", "last_error", "ended_at",
                                          "stalled_since", "cost_usd"])
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
