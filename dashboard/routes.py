"""Dashboard pages: runs (live), one run (timeline, outputs, actions), events (live, send
form), functions (stats) and apps (re-sync).

Reads go through the executor's read model only; actions go through the same code paths as
the API (`ingest.cancel`, `control.rerun`, `events.parse_request` + `ingest.accept`,
`sync_app`). Templates are Jinja2 with autoescaping, so everything user-supplied (event
names, payloads, errors) renders as text; live rows are rendered by the same templates on the
server and sent over server-sent events.

Every POST form carries a CSRF token, checked in dev mode too (`csrf.py`); the login is
throttled per client address.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import jinja2
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from executor import bodies, control
from executor import events as event_in
from executor.auth import SESSION_COOKIE, SESSION_TTL_S
from executor.read_model import RUN_STATUSES, RunQuery, parse_search

from . import csrf, view

HERE = pathlib.Path(__file__).parent
PAGE_SIZE = 50
STREAM_SECONDS = 10.0  # an SSE response ends after this; the page reconnects (bounded shutdown)
STREAM_TICK = 1.0  # Redis is read once a second per open stream
MAX_WATCH = 200
RANGES = {"15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader([HERE / "templates", HERE / "static"]),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
_env.filters["dur"] = view.duration
_env.filters["clock"] = view.clock
_env.filters["iso"] = view.iso
_env.filters["size"] = view.size
_env.filters["pretty"] = view.pretty
_env.filters["error_text"] = view.error_text
_env.globals["statuses"] = RUN_STATUSES


def _local(target: str) -> str:
    """Only same-site paths after login: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(template).render(**context), status_code=status_code,
                        headers=SECURITY_HEADERS)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _qs(params: Mapping[str, Any]) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


async def _form(request: Request) -> dict[str, str]:
    parsed = urllib.parse.parse_qs((await request.body()).decode(errors="replace"),
                                   keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _parse_time(text: str) -> int:
    """A `datetime-local` value (or ISO 8601) in UTC, as unix ms."""
    moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def run_query(params: Mapping[str, str], now_ms: int
              ) -> tuple[RunQuery, dict[str, str], dict[str, str]]:
    """The runs filter from query parameters: (query, the form's values, errors by field)."""
    form = {k: str(params.get(k, "") or "").strip()
            for k in ("function", "status", "q", "range", "from", "to")}
    errors: dict[str, str] = {}
    status = form["status"] or None
    if status and status not in RUN_STATUSES:
        errors["status"] = f"status: one of {', '.join(RUN_STATUSES)}"
        status = None
    since = now_ms - RANGES[form["range"]] if form["range"] in RANGES else None
    until = None
    for field in ("from", "to"):
        if not form[field]:
            continue
        try:
            moment = _parse_time(form[field])
        except ValueError:
            errors[field] = f"{field}: not a date and time (YYYY-MM-DDTHH:MM, UTC)"
            continue
        if field == "from":
            since = max(since or 0, moment)
        else:
            until = moment
    query = RunQuery(function_id=form["function"] or None, status=status, since_ms=since,
                     until_ms=until, search=parse_search(form["q"]))
    return query, form, errors


def mount(app: FastAPI, executor: Any) -> None:
    read = executor.read
    auth = executor.auth
    rows = _env.get_template("_rows.html")

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.add_middleware(csrf.CsrfCookie)

    # -- sessions and CSRF ------------------------------------------------------------------
    async def csrf_for(request: Request) -> str:
        return await csrf.token(auth, request)

    async def csrf_refused(request: Request, form: Mapping[str, str]) -> Response | None:
        if await csrf.valid(auth, request, form.get(csrf.CSRF_FIELD)):
            return None
        return _page("message.html", 403, title="Form expired",
                     message="This form's security token is missing or stale. Go back, "
                             "reload the page and try again.", csrf="", nav="")

    async def context(request: Request, nav: str) -> dict[str, Any]:
        return {"csrf": await csrf_for(request), "nav": nav, "production": auth.production}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, next: str = "/") -> Response:
        if not auth.production:
            return RedirectResponse("/", status_code=303)
        return _page("login.html", next=_local(next), error=None, nav="",
                     csrf=await csrf_for(request))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await _form(request)
        if refused := await csrf_refused(request, form):
            return refused
        password = form.get("password", "")
        target = _local(form.get("next") or "/")
        client = request.client.host if request.client else "unknown"
        if wait_s := await auth.login_wait_s(client):
            return _page("login.html", 429, next=target, nav="", csrf=await csrf_for(request),
                         error=f"Too many wrong passwords: try again in {wait_s // 60 + 1} "
                               "minutes.")
        if not auth.password_ok(password):
            await auth.login_failed(client)
            return _page("login.html", 401, next=target, error="Wrong password.", nav="",
                         csrf=await csrf_for(request))
        await auth.login_succeeded(client)
        token = await auth.new_session()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        if refused := await csrf_refused(request, await _form(request)):
            return refused
        await auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # -- runs -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    async def runs_page(request: Request) -> Response:
        params = request.query_params
        now = _now_ms()
        query, form, errors = run_query(params, now)
        cursor = params.get("cursor") or None
        try:
            limit = min(200, max(10, int(params.get("limit") or PAGE_SIZE)))
        except ValueError:
            limit = PAGE_SIZE
        page = await read.runs_page(query, cursor, limit)
        functions = await read.functions()
        filters = _qs(form)
        live_new = cursor is None and query.until_ms is None
        stream = "/stream/runs?" + _qs({**form, "new": "1" if live_new else "0"})
        return _page("runs.html", **await context(request, "runs"), page=page, form=form,
                     errors=errors, query=query, functions=functions, cursor=cursor,
                     filters=filters, stream=stream, live_new=live_new, limit=limit,
                     next_qs=_qs({**form, "cursor": page.next_cursor,
                                  "limit": limit if limit != PAGE_SIZE else None}),
                     now_ms=now)

    @app.get("/stream/runs", include_in_schema=False)
    async def stream_runs(request: Request) -> Response:
        params = request.query_params
        query, _, _ = run_query(params, _now_ms())
        wanted_status = query.status
        query.status = None  # new runs start Running: watched until they match
        try:
            after = int(request.headers.get("last-event-id") or params.get("after") or 0)
        except ValueError:
            after = 0
        new = params.get("new", "1") == "1"
        watched: dict[str, str] = {
            r: "Running" for r in (params.get("watch") or "").split(",")[:MAX_WATCH] if r}
        # new runs not (yet) matching the status filter; the page keeps the list (sent as
        # `pending` events) and hands it back when it reconnects
        pending: dict[str, str] = {
            r: "Running" for r in (params.get("pend") or "").split(",")[:MAX_WATCH] if r}
        seen: dict[str, int] = {}

        async def tick() -> list[str]:
            nonlocal after
            messages = []
            before = set(pending)
            if new:
                for row in await read.runs_after(after, set(seen), query):
                    seen[row["run_id"]] = row["score"]
                    after = max(after, row["score"])
                    if wanted_status and row["status"] != wanted_status:
                        if row["status"] == "Running" and len(pending) < MAX_WATCH:
                            pending[row["run_id"]] = row["status"]
                        continue
                    messages.append(_run_message(row, True))
                    if row["status"] == "Running":
                        watched[row["run_id"]] = row["status"]
                horizon = after - 10_000
                for run_id in [r for r, s in seen.items() if s < horizon]:
                    del seen[run_id]
            ids = list(watched) + list(pending)
            if ids:
                for row in await read.run_rows(ids):
                    run_id, status = row["run_id"], row["status"]
                    if run_id in watched and watched[run_id] != status:
                        messages.append(_run_message(row, False))
                        watched[run_id] = status
                    elif run_id in pending and status == wanted_status:
                        messages.append(_run_message(row, True))
                        pending.pop(run_id)
                        watched[run_id] = status
                    elif run_id in pending and status != "Running":
                        pending.pop(run_id)
                for run_id in [r for r, s in watched.items() if s != "Running"]:
                    del watched[run_id]
            if set(pending) != before:
                messages.append(f"event: pending\ndata: {orjson.dumps(list(pending)).decode()}\n\n")
            return messages

        def _run_message(row: dict[str, Any], is_new: bool) -> str:
            html = str(rows.module.run_row(row))  # type: ignore[attr-defined]
            data = orjson.dumps({"id": row["run_id"], "score": row["score"],
                                 "status": row["status"], "new": is_new, "html": html})
            return f"event: row\nid: {after}\ndata: {data.decode()}\n\n"

        return _stream(tick)

    # -- one run ----------------------------------------------------------------------------
    async def run_response(request: Request, run_id: str, *, error: str | None = None,
                           status_code: int = 200) -> Response:
        now = _now_ms()
        detail = await read.run_detail(run_id, now)
        if detail is None:
            return _page("message.html", 404, **await context(request, "runs"),
                         title="Run not found", message=f"There is no run {run_id}.")
        version = await read.run_version(run_id) if detail["run"]["status"] == "Running" else ""
        return _page("run.html", status_code, **await context(request, "runs"), d=detail,
                     run=detail["run"], timeline=view.timeline(detail, now),
                     reasons=view.waiting_reasons(detail, now), error=error, version=version,
                     trigger=view.pretty(detail["event"], 20_000), now=now)

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    async def run_page(request: Request, run_id: str) -> Response:
        return await run_response(request, run_id)

    @app.post("/runs/{run_id}/cancel", include_in_schema=False)
    async def cancel_run(request: Request, run_id: str) -> Response:
        form = await _form(request)
        if refused := await csrf_refused(request, form):
            return refused
        found = await read.run(run_id)
        if found is None:
            return await run_response(request, run_id)
        if found["status"] != "Running":
            return await run_response(request, run_id, status_code=409,
                                      error=f"The run is {found['status']}, not running.")
        await executor.ingest.cancel(run_id, "cancelled from the dashboard")
        return RedirectResponse(f"/runs/{urllib.parse.quote(run_id)}", status_code=303)

    @app.post("/runs/{run_id}/rerun", include_in_schema=False)
    async def rerun(request: Request, run_id: str) -> Response:
        form = await _form(request)
        if refused := await csrf_refused(request, form):
            return refused
        try:
            new_id = await control.rerun(executor, run_id, form.get("from_step") or None)
        except control.RerunError as exc:
            return await run_response(request, run_id, error=str(exc), status_code=exc.status)
        return RedirectResponse(f"/runs/{urllib.parse.quote(new_id)}", status_code=303)

    @app.get("/runs/{run_id}/steps/{step_hash}", include_in_schema=False)
    async def step_value(run_id: str, step_hash: str) -> Response:
        found, value = await read.step_value(run_id, step_hash)
        if not found:
            return _json({"error": f"run {run_id} has no step {step_hash}", "status": 404}, 404)
        return _json(value)

    @app.get("/runs/{run_id}/output", include_in_schema=False)
    async def run_output(run_id: str) -> Response:
        found, value = await read.run_output(run_id)
        if not found:
            return _json({"error": f"run {run_id} not found", "status": 404}, 404)
        return _json(value)

    @app.get("/stream/run/{run_id}", include_in_schema=False)
    async def stream_run(request: Request, run_id: str) -> Response:
        last = request.query_params.get("v") or ""

        async def tick() -> list[str]:
            nonlocal last
            version = await read.run_version(run_id)
            if version is None or version == last:
                return []
            last = version
            status = version.split(".", 1)[0]
            data = orjson.dumps({"version": version, "status": status}).decode()
            return [f"event: changed\ndata: {data}\n\n"]

        return _stream(tick)

    # -- events -----------------------------------------------------------------------------
    async def events_response(request: Request, *, send: dict[str, str] | None = None,
                              send_errors: dict[str, str] | None = None,
                              status_code: int = 200) -> Response:
        params = request.query_params
        name = (params.get("name") or "").strip() or None
        cursor = params.get("cursor") or None
        page = await read.events_page(name, cursor, PAGE_SIZE)
        stream = "/stream/events?" + _qs({"name": name, "new": "0" if cursor else "1"})
        return _page("events.html", status_code, **await context(request, "events"),
                     page=page, name=name or "", cursor=cursor, stream=stream,
                     next_qs=_qs({"name": name, "cursor": page.next_cursor}),
                     send=send or {"name": "", "data": "{}"}, send_errors=send_errors or {},
                     now_ms=_now_ms())

    @app.get("/events", response_class=HTMLResponse, include_in_schema=False)
    async def events_page(request: Request) -> Response:
        return await events_response(request)

    @app.post("/events", include_in_schema=False)
    async def send_event(request: Request) -> Response:
        form = await _form(request)
        if refused := await csrf_refused(request, form):
            return refused
        values = {"name": form.get("name", ""), "data": form.get("data", "")}
        errors: dict[str, str] = {}
        try:
            data = bodies.loads(values["data"] or "{}", "data")
        except bodies.BodyError as exc:
            errors["data"] = str(exc)
        else:
            body = orjson.dumps({"name": values["name"].strip(), "data": data})
            try:
                incoming = event_in.parse_request(body, executor.settings.limits,
                                                  executor.clock(), None)
            except event_in.EventError as exc:
                message = str(exc)
                field = "name" if message.startswith("name") else "data"
                errors[field] = message
            else:
                await executor.ingest.accept(incoming)
                target = f"/events/{urllib.parse.quote(incoming[0].internal_id)}?sent=1"
                return RedirectResponse(target, status_code=303)
        return await events_response(request, send=values, send_errors=errors,
                                     status_code=400)

    @app.get("/events/{event_id}", response_class=HTMLResponse, include_in_schema=False)
    async def event_page(request: Request, event_id: str) -> Response:
        found = await read.event(event_id)
        if found is None:
            return _page("message.html", 404, **await context(request, "events"),
                         title="Event not found", message=f"There is no event {event_id}.")
        runs = await read.event_run_rows(event_id)
        return _page("event.html", **await context(request, "events"), event=found,
                     payload=view.pretty(found["event"], 50_000), runs=runs,
                     sent=request.query_params.get("sent") == "1")

    @app.get("/stream/events", include_in_schema=False)
    async def stream_events(request: Request) -> Response:
        params = request.query_params
        name = (params.get("name") or "").strip() or None
        try:
            after = int(request.headers.get("last-event-id") or params.get("after") or 0)
        except ValueError:
            after = 0
        seen: dict[str, int] = {}

        async def tick() -> list[str]:
            nonlocal after
            if params.get("new", "1") != "1":
                return []
            messages = []
            for row in await read.events_after(after, set(seen), name):
                seen[row["id"]] = row["received_ms"]
                after = max(after, row["received_ms"])
                html = str(rows.module.event_row(row))  # type: ignore[attr-defined]
                data = orjson.dumps({"id": row["id"], "score": row["received_ms"],
                                     "new": True, "html": html}).decode()
                messages.append(f"event: row\nid: {after}\ndata: {data}\n\n")
            horizon = after - 10_000
            for event_id in [e for e, s in seen.items() if s < horizon]:
                del seen[event_id]
            return messages

        return _stream(tick)

    # -- functions and apps -------------------------------------------------------------------
    @app.get("/functions", response_class=HTMLResponse, include_in_schema=False)
    async def functions_page(request: Request) -> Response:
        now = _now_ms()
        functions = await read.functions()
        apps = await read.apps()
        stats = await read.function_stats(now)
        empty = {"hour": 0, "day": 0, "ended": 0, "failed": 0, "failure_rate": None,
                 "p50_ms": None, "p95_ms": None, "buckets": [[0, 0] for _ in range(24)]}
        groups: dict[str, list[dict[str, Any]]] = {a["id"]: [] for a in apps}
        for fn in functions:
            entry = stats["functions"].get(fn["id"], empty)
            groups.setdefault(fn["app_id"], []).append({
                **fn, "stats": entry, "chart": view.hourly_chart(entry["buckets"]),
                "options": view.function_options(fn["config"])})
        return _page("functions.html", **await context(request, "functions"), groups=groups,
                     apps={a["id"]: a for a in apps}, stats=stats)

    async def apps_response(request: Request, message: str | None = None,
                            failed: bool = False) -> Response:
        return _page("apps.html", **await context(request, "apps"), apps=await read.apps(),
                     message=message, failed=failed)

    @app.get("/apps", response_class=HTMLResponse, include_in_schema=False)
    async def apps_page(request: Request) -> Response:
        return await apps_response(request)

    @app.post("/apps/{app_id}/sync", include_in_schema=False)
    async def resync(request: Request, app_id: str) -> Response:
        form = await _form(request)
        if refused := await csrf_refused(request, form):
            return refused
        # the URL comes from the stored app, never from the form (no request forgery)
        found = next((a for a in await read.apps() if a["id"] == app_id), None)
        if found is None or not found.get("url"):
            return await apps_response(request, f"No synced app {app_id}.", True)
        error = await executor.sync_app(found["url"])
        if error:
            return await apps_response(request, f"Re-sync of {app_id} failed: {error}", True)
        return await apps_response(request, f"Re-synced {app_id}.")


def _json(value: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(value, option=orjson.OPT_INDENT_2), status_code=status_code,
                    media_type="application/json", headers=SECURITY_HEADERS)


def _stream(tick: Any) -> StreamingResponse:
    """Server-sent events: `tick()` once a second, for at most STREAM_SECONDS; then the
    response ends and the page reconnects (so a shutting-down server is never held open)."""

    async def body() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        deadline = time.monotonic() + STREAM_SECONDS
        while True:  # a disconnected client ends this at the next write
            messages = await tick()
            yield "".join(messages) if messages else ": tick\n\n"
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(STREAM_TICK)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no",
                                      **SECURITY_HEADERS})
