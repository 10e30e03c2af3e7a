"""The API for operating at scale, beside `api.py`'s: the runs list with its indexed filters
and count (`GET /v1/runs`), exact per-function statistics (`GET /v1/metrics`), and bulk
cancel / rerun with a preview (`POST /v1/bulk`, `GET /v1/bulk/{id}`). The same reads and
actions as the dashboard's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from . import bulk, times
from .read_model import RUN_STATUSES, WINDOWS, RunQuery, parse_search

if TYPE_CHECKING:
    from .service import Executor


def _answer(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message, "status": status}, status_code=status)


def _time(value: Any, field: str) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        try:
            return times.parse_ms(value)
        except ValueError:
            pass
    raise ValueError(f"{field}: RFC 3339 time or unix ms")


def run_query(spec: dict[str, Any]) -> RunQuery:
    """A runs filter from the API's fields: function_id, status, q, started_after,
    started_before. Raises ValueError naming the bad field."""
    status = spec.get("status") or None
    if status is not None and status not in (*RUN_STATUSES, "Skipped"):
        raise ValueError(f"status: one of {', '.join((*RUN_STATUSES, 'Skipped'))}")
    search = parse_search(spec.get("q")) if spec.get("q") else None
    if search is not None and search.error:
        raise ValueError(f"q: {search.error}")
    return RunQuery(function_id=spec.get("function_id") or None, status=status,
                    since_ms=_time(spec.get("started_after"), "started_after"),
                    until_ms=_time(spec.get("started_before"), "started_before"),
                    search=search)


def router(executor: Executor) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/runs")
    async def list_runs(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            query = run_query(params)
            limit = int(params.get("limit") or 50)
        except ValueError as exc:
            return _error(400, str(exc))
        if not 1 <= limit <= 1000:
            return _error(400, "limit: must be between 1 and 1000")
        page = await executor.read.runs_page(query, params.get("cursor") or None, limit,
                                             executor.clock())
        return _answer({"data": page.rows, "total": page.total,
                        "next_cursor": page.next_cursor})

    @routes.get("/v1/metrics")
    async def metrics(window: str = "24h", function_id: str | None = None) -> Response:
        if window not in WINDOWS:
            return _error(400, f"window: one of {', '.join(WINDOWS)}")
        found = await executor.read.function_metrics(executor.clock(), window, function_id)
        win = found["window"]
        out = {}
        for fn, entry in found["functions"].items():
            out[fn] = {k: v for k, v in entry.items() if not k.endswith("_hist")}
            out[fn]["series"] = [{"start_ms": start, **bucket} for start, bucket in
                                 zip(found["starts"], entry["series"], strict=True)]
        return _answer({"data": out, "window": {"name": win.name, "bucket_ms": win.bucket_ms,
                                                "buckets": win.buckets},
                        "backlog_capped": found["backlog_capped"]})

    @routes.post("/v1/bulk")
    async def bulk_action(request: Request) -> Response:
        """{"action": "cancel" | "rerun", "run_ids": [...] or "filter": {function_id,
        status, q, started_after, started_before}, "reason": "...", "dry_run": bool}"""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body: malformed JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, "body: must be a JSON object")
        action = str(body.get("action") or "")
        try:
            bulk.check(action)
            if isinstance(body.get("run_ids"), list):
                target = bulk.Target(run_ids=[str(r) for r in body["run_ids"]])
            elif isinstance(body.get("filter"), dict):
                target = bulk.Target(query=run_query(body["filter"]),
                                     description=orjson.dumps(body["filter"]).decode())
            else:
                return _error(400, "give run_ids (a list) or filter (an object)")
            if body.get("dry_run"):
                return _answer({"data": await bulk.preview(executor, action, target)})
            reason = body.get("reason")
            if not isinstance(reason, str):
                return _error(400, "reason: required, why the runs are acted on")
            return _answer({"data": await bulk.start(executor, action, target, reason)}, 202)
        except (ValueError, bulk.BulkError) as exc:
            return _error(400, str(exc))

    @routes.get("/v1/bulk/{job_id}")
    async def bulk_job(job_id: str) -> Response:
        found = await bulk.job(executor, job_id)
        if found is None:
            return _error(404, f"bulk action {job_id} not found")
        return _answer({"data": found})

    return routes
