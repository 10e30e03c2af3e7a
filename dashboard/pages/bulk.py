"""Bulk actions from the runs list: the selected rows, or every run matching the filter,
cancelled or rerun after a preview (how many, how many can be acted on) and a confirmation
that takes a reason; then the job's progress page. The work is `executor/bulk.py`, shared
with the API (`POST /v1/bulk`)."""

from __future__ import annotations

import urllib.parse

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from executor import bulk

from ..render import Dashboard, page, qs
from .runs import run_query

FILTER_FIELDS = ("function", "status", "q", "range", "from", "to")
VERBS = {"cancel": "Cancel", "rerun": "Rerun"}


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.post("/runs/bulk")
    async def bulk_action(request: Request) -> Response:
        parsed = urllib.parse.parse_qs((await request.body()).decode(errors="replace"),
                                       keep_blank_values=True)
        form = {k: v[0] for k, v in parsed.items()}
        if refused := await dash.csrf_refused(request, form):
            return refused
        action = form.get("action", "")
        filters = {k: form.get(f"f_{k}", "") for k in FILTER_FIELDS}
        back = "/" + (f"?{qs(filters)}" if qs(filters) else "")
        context = await dash.context(request, "runs")
        if action not in bulk.ACTIONS:
            return page("message.html", 400, **context, title="No action",
                        message="Choose Cancel or Rerun.")
        if form.get("all") == "1":
            query, _, errors = run_query(filters, int(dash.executor.clock()))
            if errors:
                return page("message.html", 400, **context, title="Filter not understood",
                            message="; ".join(errors.values()))
            target = bulk.Target(query=query, description=qs(filters) or "every run")
            hidden = [("all", "1")] + [(f"f_{k}", v) for k, v in filters.items() if v]
        else:
            run_ids = [r for r in parsed.get("run", []) if r][:bulk.MAX_RUNS]
            if not run_ids:
                return page("message.html", 400, **context, title="No runs selected",
                            message="Tick the runs to act on, or “Every run matching this "
                                    "filter”, then choose the action again.")
            target = bulk.Target(run_ids=run_ids)
            hidden = [("run", r) for r in run_ids] + [(f"f_{k}", v) for k, v in
                                                      filters.items() if v]
        reason = form.get("reason", "")
        if form.get("step") == "confirm":
            try:
                started = await bulk.start(dash.executor, action, target, reason)
            except bulk.BulkError as exc:
                return await preview(request, action, target, hidden, back, reason, str(exc))
            return RedirectResponse(f"/bulk/{urllib.parse.quote(started['id'])}",
                                    status_code=303)
        return await preview(request, action, target, hidden, back, reason, None)

    async def preview(request: Request, action: str, target: bulk.Target,
                      hidden: list[tuple[str, str]], back: str, reason: str,
                      reason_error: str | None) -> Response:
        found = await bulk.preview(dash.executor, action, target)
        sample = await dash.read.run_rows(found["sample"])
        return page("bulk.html", 400 if reason_error else 200,
                    **await dash.context(request, "runs"), action=action, verb=VERBS[action],
                    preview=found, sample=sample, hidden=hidden, back=back, reason=reason,
                    reason_error=reason_error, error=None)

    @routes.get("/bulk/{job_id}")
    async def bulk_job(request: Request, job_id: str) -> Response:
        found = await bulk.job(dash.executor, job_id)
        if found is None:
            return page("message.html", 404, **await dash.context(request, "runs"),
                        title="No such bulk action", message=f"There is no bulk action {job_id}.")
        return page("bulk_job.html", **await dash.context(request, "runs"), job=found)

    return routes
