"""The events list (live, with a send form) and one event with the runs it started."""

from __future__ import annotations

import urllib.parse

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from executor import bodies
from executor import events as event_in
from executor.read_model import parse_search

from .. import view
from ..live import EventsFeed, stream
from ..render import PAGE_SIZE, Dashboard, form_of, now_ms, page, qs
from .runs import RANGES, _after, run_query, viewer, without_empty


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    read = dash.read
    executor = dash.executor

    async def events_response(request: Request, *, send: dict[str, str] | None = None,
                              send_errors: dict[str, str] | None = None,
                              status_code: int = 200) -> Response:
        params = request.query_params
        now = now_ms()
        name = (params.get("name") or "").strip() or None
        cursor = params.get("cursor") or None
        internal = params.get("internal") == "1"
        # the time range and the search read like the runs list's
        query, form, errors = run_query(params, now)
        found = await read.events_page(name, cursor, PAGE_SIZE, internal=internal,
                                       search=query.search, since_ms=query.since_ms,
                                       until_ms=query.until_ms)
        filters = {"name": name, "q": form["q"], "range": form["range"], "from": form["from"],
                   "to": form["to"], "internal": "1" if internal else None}
        live = cursor is None and query.until_ms is None
        feed = "/stream/events?" + qs({**filters, "new": "1" if live else "0"})
        return page("events.html", status_code, **await dash.context(request, "events"),
                    page=found, name=name or "", cursor=cursor, stream=feed, live=live,
                    form=form, errors=errors, internal=internal, ranges=RANGES,
                    filters=qs(filters), next_qs=qs({**filters, "cursor": found.next_cursor}),
                    send=send or {"name": "", "data": "{}"}, send_errors=send_errors or {},
                    now_ms=now)

    @routes.get("/events")
    async def events_page(request: Request) -> Response:
        if (clean := without_empty(request)) is not None:
            return clean
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
                        title="Event not found", message=dash.gone("event", event_id))
        links = await read.event_links(event_id)
        return page("event.html", **await dash.context(request, "events"), event=found,
                    payload=view.pretty(found["event"], 50_000), runs=links["started"],
                    links=links, sent=request.query_params.get("sent") == "1")

    @routes.get("/events/{event_id}/view")
    async def event_viewer(request: Request, event_id: str) -> Response:
        found = await read.event(event_id)
        base = f"/events/{urllib.parse.quote(event_id)}"
        return viewer(request, f"Event {event_id}", base, f"/v1/events/{urllib.parse.quote(event_id)}",
                      found["event"] if found else None, found is not None,
                      await dash.context(request, "events"))

    @routes.get("/stream/events")
    async def stream_events(request: Request) -> Response:
        params = request.query_params
        name = (params.get("name") or "").strip() or None
        feed = EventsFeed(read, name, after=_after(request), new=params.get("new", "1") == "1",
                          internal=params.get("internal") == "1",
                          search=parse_search(params.get("q")))
        return stream(feed.tick)

    return routes
