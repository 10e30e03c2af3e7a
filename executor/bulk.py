"""Bulk actions: cancel or rerun many runs at once, chosen by id or as "every run matching
this filter", after a preview (how many, how many can be acted on) and with a reason.

A job is stored (`keys.bulk_job`: request, progress, result; `keys.bulk_job_runs`: the run
ids, resolved when it starts) and worked through in the background by the process that
accepted it, each run through the same path as a single action (`Ingest.cancel`,
`control.rerun`), progress written every PROGRESS_EVERY runs. The dashboard and the API
(`POST /v1/bulk`) both come through here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import orjson
from ulid import ULID

from . import control, keys
from .read_model import RunQuery

if TYPE_CHECKING:
    from .service import Executor

log = logging.getLogger("inngest_like.executor")

ACTIONS = ("cancel", "rerun")
MAX_RUNS = 50_000  # one job acts on at most this many runs (the newest matching)
MAX_REASON = 500
PROGRESS_EVERY = 100
_running: set[asyncio.Task[None]] = set()  # keeps the background jobs referenced


class BulkError(ValueError):
    pass


@dataclasses.dataclass
class Target:
    """The runs a bulk action acts on: explicit ids, or every run a query matches."""

    run_ids: list[str] | None = None
    query: RunQuery | None = None
    description: str = ""  # the filter in words, for the preview and the job record


def check(action: str, reason: str | None = None) -> str:
    if action not in ACTIONS:
        raise BulkError(f"action: one of {', '.join(ACTIONS)}")
    if reason is None:
        return ""
    text = " ".join(reason.split())[:MAX_REASON]
    if not text:
        raise BulkError("reason: say why (it is kept with every run the action touches)")
    return text


async def resolve(executor: Executor, target: Target) -> tuple[list[str], int]:
    """(the run ids to act on, newest first and at most MAX_RUNS; how many match in all)."""
    if target.run_ids is not None:
        ids = list(dict.fromkeys(r for r in target.run_ids if r))
        return ids[:MAX_RUNS], len(ids)
    if target.query is None:
        raise BulkError("give run ids or a filter")
    return await executor.read.run_ids_matching(target.query, MAX_RUNS)


async def _running_count(executor: Executor, run_ids: list[str]) -> int:
    count = 0
    for at in range(0, len(run_ids), 5000):
        async with executor.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids[at:at + 5000]:
                pipe.hget(keys.run(run_id), "status")
            count += sum(1 for s in await pipe.execute() if s == b"Running")
    return count


async def preview(executor: Executor, action: str, target: Target) -> dict[str, Any]:
    """What the action would do: how many runs, how many it can act on (a cancel acts on
    the running ones), and the newest few."""
    check(action)
    ids, total = await resolve(executor, target)
    if target.run_ids is None and target.query is not None and action == "cancel" \
            and target.query.status == "Running":
        actionable = len(ids)
    elif action == "cancel":
        actionable = await _running_count(executor, ids)
    else:
        actionable = len(ids)
    return {"action": action, "count": len(ids), "total": total, "capped": total > len(ids),
            "actionable": actionable, "filter": target.description, "sample": ids[:10]}


async def start(executor: Executor, action: str, target: Target, reason: str) -> dict[str, Any]:
    """Store a job for the target's runs and work it in the background; the job's record."""
    reason = check(action, reason)
    ids, total = await resolve(executor, target)
    job_id = str(ULID())
    now = executor.clock()
    record = {"id": job_id, "action": action, "reason": reason, "total": len(ids),
              "matched": total, "done": 0, "succeeded": 0, "skipped": 0, "status": "running",
              "created_at": now, "updated_at": now, "filter": target.description,
              "errors": "[]"}
    async with executor.redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.bulk_job(job_id), mapping=record)  # type: ignore[arg-type]
        for at in range(0, len(ids), 5000):
            pipe.rpush(keys.bulk_job_runs(job_id), *ids[at:at + 5000])
        pipe.zadd(keys.BULK_JOBS, {job_id: now})
        await pipe.execute()
    task = asyncio.create_task(work(executor, job_id))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return await job(executor, job_id) or record


async def work(executor: Executor, job_id: str) -> None:
    """Act on each run of the job, in order, recording progress as it goes."""
    redis = executor.redis
    fields: Any = await redis.hgetall(keys.bulk_job(job_id))
    action = fields[b"action"].decode()
    reason = fields[b"reason"].decode()
    done = int(fields.get(b"done", 0))
    succeeded, skipped = int(fields.get(b"succeeded", 0)), int(fields.get(b"skipped", 0))
    errors: list[str] = orjson.loads(fields.get(b"errors") or b"[]")
    try:
        while True:
            batch: Any = await redis.lrange(keys.bulk_job_runs(job_id), done,
                                            done + PROGRESS_EVERY - 1)
            if not batch:
                break
            for raw in batch:
                run_id = raw.decode()
                if action == "cancel":
                    ok = await executor.ingest.cancel(run_id, f"cancelled in bulk: {reason}")
                else:
                    try:
                        await control.rerun(executor, run_id, reason=reason)
                        ok = True
                    except control.RerunError as exc:
                        ok = False
                        if len(errors) < 20:
                            errors.append(f"{run_id}: {exc}")
                succeeded += ok
                skipped += not ok
                done += 1
            await redis.hset(keys.bulk_job(job_id), mapping={  # type: ignore[misc]
                "done": done, "succeeded": succeeded, "skipped": skipped,
                "errors": orjson.dumps(errors), "updated_at": executor.clock()})
        status = "done"
    except Exception:
        log.exception("bulk %s %s stopped", action, job_id)
        status = "failed"
    await redis.hset(keys.bulk_job(job_id), mapping={  # type: ignore[misc]
        "status": status, "updated_at": executor.clock()})


async def job(executor: Executor, job_id: str) -> dict[str, Any] | None:
    fields: Any = await executor.redis.hgetall(keys.bulk_job(job_id))
    if not fields:
        return None
    out: dict[str, Any] = {k.decode(): v.decode() for k, v in fields.items()}
    for name in ("total", "matched", "done", "succeeded", "skipped", "created_at",
                 "updated_at"):
        out[name] = int(out.get(name) or 0)
    out["errors"] = orjson.loads(out.get("errors") or "[]")
    return out
