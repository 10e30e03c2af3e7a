"""Functions (options and statistics) and apps (re-sync)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import view
from ..render import Dashboard, form_of, now_ms, page


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    read = dash.read

    @routes.get("/functions")
    async def functions_page(request: Request) -> Response:
        functions = await read.functions()
        apps = await read.apps()
        stats = await read.function_stats(now_ms())
        costs = await dash.executor.operations.usage.functions_usage(
            [fn["id"] for fn in functions], now_ms())  # cost per run, spend per day
        empty = {"hour": 0, "day": 0, "ended": 0, "failed": 0, "failure_rate": None,
                 "p50_ms": None, "p95_ms": None, "buckets": [[0, 0] for _ in range(24)]}
        groups: dict[str, list[dict[str, Any]]] = {a["id"]: [] for a in apps}
        for fn in functions:
            entry = stats["functions"].get(fn["id"], empty)
            groups.setdefault(fn["app_id"], []).append({
                **fn, "stats": entry, "chart": view.hourly_chart(entry["buckets"]),
                "usage": costs[fn["id"]], "spend_chart": view.spend_chart(costs[fn["id"]]),
                "options": view.function_options(fn["config"])})
        return page("functions.html", **await dash.context(request, "functions"),
                    groups=groups, apps={a["id"]: a for a in apps}, stats=stats)

    async def apps_response(request: Request, message: str | None = None,
                            failed: bool = False) -> Response:
        return page("apps.html", **await dash.context(request, "apps"),
                    apps=await read.apps(), message=message, failed=failed)

    @routes.get("/apps")
    async def apps_page(request: Request) -> Response:
        return await apps_response(request)

    @routes.post("/apps/{app_id}/sync")
    async def resync(request: Request, app_id: str) -> Response:
        form = await form_of(request)
        if refused := await dash.csrf_refused(request, form):
            return refused
        # the URL comes from the stored app, never from the form (no request forgery)
        found = next((a for a in await read.apps() if a["id"] == app_id), None)
        if found is None or not found.get("url"):
            return await apps_response(request, f"No synced app {app_id}.", True)
        error = await dash.executor.sync_app(found["url"])
        if error:
            return await apps_response(request, f"Re-sync of {app_id} failed: {error}", True)
        return await apps_response(request, f"Re-synced {app_id}.")

    return routes
