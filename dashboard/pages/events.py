"""The events list (live, with a send form) and one event with the runs it started."""

from __future__ import annotations

import urllib.parse

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from executor import bodies
from executor import events as event_in

from .. import view
from ..live import EventsFeed, stream
from ..render import PAGE_SIZE, Dashboard, form_of, now_ms, page, qs
from .runs import _after


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    read = dash.read
    executor = dash.executor

    async def events_response(request: Request, *, send: dict[str, str] | None = None,
                              send_errors: dict[str, str] | None = None,
                              status_code: int = 200) -> Response:
        params = request.query_params
        name = (params.get("name") or "").strip() or None
        cursor = params.get("cursor") or None
        found = await read.events_page(name, cursor, PAGE_SIZE)
        feed = "/stream/events?" + qs({"name": name, "new": "0" if cursor else "1"})
        return page("events.html", status_code, **await dash.context(request, "events"),
                    page=found, name=name or "", cursor=cursor, stream=feed,
                    next_qs=qs({"name": name, "cursor": found.next_cursor}),
                    send=send or {"name": "", "data": "{}"}, send_errors=send_errors or {},
                    now_ms=now_ms())

    @routes.get("/events")
    async def events_page(request: Request) -> Response:
        return await events_response(request)

    @routes.post("/events")
    async def send_event(request: Request) -> Response:
        form = await form_of(request)
        if refused := await dash.csrf_refused(request, form):
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

    @routes.get("/events/{event_id}")
    async def event_page(request: Request, event_id: str) -> Response:
        found = await read.event(event_id)
        if found is None:
            return page("message.html", 404, **await dash.context(request, "events"),
                        title="Event not found", message=f"There is no event {event_id}.")
        runs = await read.event_run_rows(event_id)
        return page("event.html", **await dash.context(request, "events"), event=found,
                    payload=view.pretty(found["event"], 50_000), runs=runs,
                    sent=request.query_params.get("sent") == "1")

    @routes.get("/stream/events")
    async def stream_events(request: Request) -> Response:
        params = request.query_params
        name = (params.get("name") or "").strip() or None
        feed = EventsFeed(read, name, after=_after(request), new=params.get("new", "1") == "1")
        return stream(feed.tick)

    return routes
