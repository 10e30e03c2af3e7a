"""The runs list (filters, paging, live) and one run (timeline, values, cancel, rerun)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from executor import control, times
from executor.read_model import RUN_STATUSES, RunQuery, parse_search

from .. import view
from ..live import RunFeed, RunsFeed, stream
from ..render import PAGE_SIZE, Dashboard, form_of, json_response, now_ms, page, qs

STALLED = "Stalled"
MAX_REASON = 500

RANGES = {"15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000}


def run_query(params: Mapping[str, str], now: int
              ) -> tuple[RunQuery, dict[str, str], dict[str, str]]:
    """The runs filter from query parameters: (query, the form's values, errors by field)."""
    form = {k: str(params.get(k, "") or "").strip()
            for k in ("function", "status", "q", "range", "from", "to")}
    errors: dict[str, str] = {}
    status = form["status"] or None
    stalled = status == STALLED  # running runs flagged stalled: an index of their own
    if stalled:
        status = None
    if status and status not in RUN_STATUSES:
        errors["status"] = f"status: one of {', '.join((*RUN_STATUSES, STALLED))}"
        status = None
    since = now - RANGES[form["range"]] if form["range"] in RANGES else None
    until = None
    for field in ("from", "to"):
        if not form[field]:
            continue
        try:
            moment = times.parse_ms(form[field])  # a `datetime-local` value, UTC
        except ValueError:
            errors[field] = f"{field}: not a date and time (YYYY-MM-DDTHH:MM, UTC)"
            continue
        if field == "from":
            since = max(since or 0, moment)
        else:
            until = moment
    search = parse_search(form["q"])
    if search is not None and search.error:
        errors["q"] = f"search: {search.error}"
    query = RunQuery(function_id=form["function"] or None, status=status, since_ms=since,
                     until_ms=until, search=search, stalled=stalled)
    return query, form, errors


def without_empty(request: Request) -> Response | None:
    """A filter form submits its empty fields too (`?function=&status=Failed&q=`): answer
    with the same page at the URL without them, so links and history stay readable."""
    params = request.query_params
    if not any(v == "" for v in params.values()):
        return None
    kept = [(k, v) for k, v in params.multi_items() if v != ""]
    target = request.url.path + ("?" + urllib.parse.urlencode(kept) if kept else "")
    return RedirectResponse(target, status_code=303)


def viewer(request: Request, title: str, back: str, raw: str, value: Any,
           found: bool, context: dict[str, Any]) -> Response:
    """The value viewer: a large value as a folding tree with a search."""
    if not found:
        return page("message.html", 404, **context, title=f"{title}: not found",
                    message="There is no such value.")
    query = (request.query_params.get("q") or "").strip()
    return page("viewer.html", **context, title=title, back=back, raw=raw, query=query,
                tree=view.value_tree(value, query), size=len(view.pretty(value, 0).text))


def _after(request: Request) -> int:
    try:
        return int(request.headers.get("last-event-id")
                   or request.query_params.get("after") or 0)
    except ValueError:
        return 0


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    read = dash.read

    @routes.get("/")
    @routes.get("/runs")
    async def runs_page(request: Request) -> Response:
        if (clean := without_empty(request)) is not None:
            return clean
        params = request.query_params
        now = now_ms()
        query, form, errors = run_query(params, now)
        cursor = params.get("cursor") or None
        try:
            limit = min(200, max(10, int(params.get("limit") or PAGE_SIZE)))
        except ValueError:
            limit = PAGE_SIZE
        found = await read.runs_page(query, cursor, limit, now)
        functions = await read.functions()
        live_new = cursor is None and query.until_ms is None and not query.stalled
        feed = "/stream/runs?" + qs({**form, "new": "1" if live_new else "0"})
        return page("runs.html", **await dash.context(request, "runs"), page=found, form=form,
                    errors=errors, query=query, functions=functions, cursor=cursor,
                    filters=qs(form), stream=feed, live_new=live_new, limit=limit,
                    next_qs=qs({**form, "cursor": found.next_cursor,
                                "limit": limit if limit != PAGE_SIZE else None}),
                    now_ms=now)

    @routes.get("/stream/runs")
    async def stream_runs(request: Request) -> Response:
        params = request.query_params
        query, _, _ = run_query(params, now_ms())
        feed = RunsFeed(read, query, after=_after(request), new=params.get("new", "1") == "1",
                        watch=params.get("watch"), pend=params.get("pend"), clock=now_ms)
        return stream(feed.tick)

    async def run_response(request: Request, run_id: str, *, error: str | None = None,
                           status_code: int = 200, cancel_error: str | None = None
                           ) -> Response:
        now = now_ms()
        detail = await read.run_detail(run_id, now)
        if detail is None:
            return page("message.html", 404, **await dash.context(request, "runs"),
                        title="Run not found", message=dash.gone("run", run_id))
        version = await read.run_version(run_id) if detail["run"]["status"] == "Running" else ""
        return page("run.html", status_code, **await dash.context(request, "runs"), d=detail,
                    run=detail["run"], timeline=view.timeline(detail, now),
                    reasons=view.waiting_reasons(detail, now), error=error, version=version,
                    trigger=view.pretty(detail["event"], 20_000), now=now,
                    times=view.run_times(detail["run"], now), cancel_error=cancel_error)

    @routes.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        return await run_response(request, run_id)

    @routes.post("/runs/{run_id}/cancel")
    async def cancel_run(request: Request, run_id: str) -> Response:
        form = await form_of(request)
        if refused := await dash.csrf_refused(request, form):
            return refused
        found = await read.run(run_id)
        if found is None:
            return await run_response(request, run_id)
        if found["status"] != "Running":
            return await run_response(request, run_id, status_code=409,
                                      error=f"The run is {found['status']}, not running.")
        reason = " ".join(form.get("reason", "").split())[:MAX_REASON]
        if not reason:
            return await run_response(request, run_id, status_code=400,
                                      cancel_error="reason: say why the run is cancelled")
        await dash.executor.ingest.cancel(run_id, f"cancelled from the dashboard: {reason}")
        return RedirectResponse(f"/runs/{urllib.parse.quote(run_id)}", status_code=303)

    @routes.post("/runs/{run_id}/rerun")
    async def rerun(request: Request, run_id: str) -> Response:
        form = await form_of(request)
        if refused := await dash.csrf_refused(request, form):
            return refused
        try:
            new_id = await control.rerun(dash.executor, run_id, form.get("from_step") or None)
        except control.RerunError as exc:
            return await run_response(request, run_id, error=str(exc), status_code=exc.status)
        return RedirectResponse(f"/runs/{urllib.parse.quote(new_id)}", status_code=303)

    @routes.get("/runs/{run_id}/steps/{step_hash}")
    async def step_value(run_id: str, step_hash: str) -> Response:
        found, value = await read.step_value(run_id, step_hash)
        if not found:
            return json_response({"error": f"run {run_id} has no step {step_hash}",
                                  "status": 404}, 404)
        return json_response(value)

    @routes.get("/runs/{run_id}/output")
    async def run_output(run_id: str) -> Response:
        found, value = await read.run_output(run_id)
        if not found:
            return json_response({"error": f"run {run_id} not found", "status": 404}, 404)
        return json_response(value)

    @routes.get("/runs/{run_id}/steps/{step_hash}/view")
    async def step_viewer(request: Request, run_id: str, step_hash: str) -> Response:
        found, value = await read.step_value(run_id, step_hash)
        base = f"/runs/{urllib.parse.quote(run_id)}"
        return viewer(request, f"Step {step_hash[:12]}… of run {run_id}", base,
                      f"{base}/steps/{urllib.parse.quote(step_hash)}", value, found,
                      await dash.context(request, "runs"))

    @routes.get("/runs/{run_id}/output/view")
    async def output_viewer(request: Request, run_id: str) -> Response:
        found, value = await read.run_output(run_id)
        base = f"/runs/{urllib.parse.quote(run_id)}"
        return viewer(request, f"Output of run {run_id}", base, f"{base}/output", value,
                      found, await dash.context(request, "runs"))

    @routes.get("/stream/run/{run_id}")
    async def stream_run(request: Request, run_id: str) -> Response:
        return stream(RunFeed(read, run_id, request.query_params.get("v") or "").tick)

    return routes
