"""Dashboard pages: runs, one run's steps, events, apps and functions.

Reads go through the executor's read model only; templates are Jinja2 with autoescaping, so
everything user-supplied (event names, payloads, errors) renders as text.
"""

from __future__ import annotations

import pathlib
import urllib.parse
from typing import Any

import jinja2
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from executor.auth import SESSION_COOKIE, SESSION_TTL_S

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(pathlib.Path(__file__).parent / "templates"),
    autoescape=True,
)
_env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _local(target: str) -> str:
    """Only same-site paths after login: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _page(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context))


def mount(app: FastAPI, executor: Any) -> None:
    read = executor.read
    auth = executor.auth

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(next: str = "/") -> Response:
        if not auth.production:
            return RedirectResponse("/", status_code=303)
        return _page("login.html", next=_local(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = urllib.parse.parse_qs((await request.body()).decode(errors="replace"))
        password = (form.get("password") or [""])[0]
        target = _local((form.get("next") or ["/"])[0])
        if not auth.password_ok(password):
            page = _page("login.html", next=target, error="Wrong password.")
            page.status_code = 401
            return page
        token = await auth.new_session()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def runs_page() -> HTMLResponse:
        return _page("runs.html", runs=await read.recent_runs(100),
                     events=await read.events(None, 20), apps=await read.apps(),
                     functions=await read.functions())

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    async def run_page(run_id: str) -> HTMLResponse:
        run = await read.run(run_id)
        if run is None:
            return HTMLResponse("<h1>Run not found</h1>", status_code=404)
        event = await read.event(run["event_id"])
        return _page("run.html", run=run, steps=await read.steps(run_id) or [], event=event)
