"""Dashboard pages: runs (live), one run (timeline, outputs, actions), events (live, send
form), functions (stats) and apps (re-sync), one router per page family in `pages/`.

Reads go through the executor's read model only; actions go through the same code paths as
the API (`ingest.cancel`, `control.rerun`, `events.parse_request` + `ingest.accept`,
`sync_app`). Templates are Jinja2 with autoescaping (`render.py`), so everything
user-supplied (event names, payloads, errors) renders as text; live rows are rendered by the
same templates on the server and sent over server-sent events (`live.py`).

Every POST form carries a CSRF token, checked in dev mode too (`csrf.py`); the login is
throttled per client address.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import csrf
from .pages import bulk, catalog, events, runs, session
from .render import HERE, Dashboard


def mount(app: FastAPI, executor: Any) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.add_middleware(csrf.CsrfCookie)
    dash = Dashboard(executor)
    for pages in (session, runs, bulk, events, catalog):
        app.include_router(pages.router(dash))
