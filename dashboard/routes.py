"""Dashboard pages: runs, one run's steps, events, apps and functions.

Reads go through the executor's read model only; templates are Jinja2 with autoescaping, so
everything user-supplied (event names, payloads, errors) renders as text.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jinja2
import orjson
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(pathlib.Path(__file__).parent / "templates"),
    autoescape=True,
)
_env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _page(name: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(**context))


def mount(app: FastAPI, executor: Any) -> None:
    read = executor.read

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
