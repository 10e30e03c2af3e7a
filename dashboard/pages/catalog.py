"""Functions (options and exact statistics: the list, and one function's page) and apps
(re-sync)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .. import view
from ..render import Dashboard, form_of, now_ms, page


def _empty(buckets: int) -> dict[str, Any]:
    """The statistics of a function with no runs in the window."""
    return {"started": 0, "hour": 0, "finished": 0, "failed": 0, "failure_rate": None,
            "ended": dict.fromkeys(("Completed", "Failed", "Cancelled", "Skipped"), 0),
            "exec": {"count": 0, "p50": None, "p95": None, "p99": None},
            "queue": {"count": 0, "p50": None, "p95": None, "p99": None},
            "exec_hist": {}, "queue_hist": {},
            "backlog": {"count": 0, "oldest_ms": None, "age_ms": None},
            "series": [{} for _ in range(buckets)]}


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    read = dash.read

    @routes.get("/functions")
    async def functions_page(request: Request) -> Response:
        functions = await read.functions()
        apps = await read.apps()
        metrics = await read.function_metrics(now_ms(), "24h")
        window = metrics["window"]
        costs = await dash.executor.operations.usage.functions_usage(
            [fn["id"] for fn in functions], now_ms())  # cost per run, spend per day
        groups: dict[str, list[dict[str, Any]]] = {a["id"]: [] for a in apps}
        for fn in functions:
            entry = metrics["functions"].get(fn["id"]) or _empty(window.buckets)
            groups.setdefault(fn["app_id"], []).append({
                **fn, "stats": entry,
                "chart": view.series_chart(entry["series"], metrics["starts"], window.bucket_ms),
                "usage": costs[fn["id"]], "spend_chart": view.spend_chart(costs[fn["id"]]),
                "options": view.function_options(fn["config"])})
        return page("functions.html", **await dash.context(request, "functions"),
                    groups=groups, apps={a["id"]: a for a in apps}, metrics=metrics)

    @routes.get("/functions/{function_id}")
    async def function_page(request: Request, function_id: str) -> Response:
        found = next((f for f in await read.functions() if f["id"] == function_id), None)
        if found is None:
            return page("message.html", 404, **await dash.context(request, "functions"),
                        title="Function not found",
                        message=f"There is no synced function {function_id}.")
        now = now_ms()
        windows = []
        every = await read.function_metrics_many(now, ("1h", "24h", "7d"), function_id)
        for name in ("1h", "24h", "7d"):
            metrics = every[name]
            window = metrics["window"]
            entry = metrics["functions"].get(function_id) or _empty(window.buckets)
            windows.append({"name": name, "label": window.label, "stats": entry,
                            "chart": view.series_chart(entry["series"], metrics["starts"],
                                                       window.bucket_ms, 600, 80)})
        day = windows[1]["stats"]
        exec_chart, _ = view.histogram_chart(day["exec_hist"])
        queue_chart, _ = view.histogram_chart(day["queue_hist"])
        return page("function.html", **await dash.context(request, "functions"), fn=found,
                    windows=windows, options=view.function_options(found["config"]),
                    exec_chart=exec_chart, queue_chart=queue_chart, backlog=day["backlog"])

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
