"""Rendering and the request context every dashboard page shares: the Jinja2 environment
(autoescaped, so everything user-supplied renders as text), security headers, form reading,
and the CSRF checks of POST forms (production mode, where there is a login)."""

from __future__ import annotations

import pathlib
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

import jinja2
import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from executor import retention
from executor.read_model import RUN_STATUSES

from . import csrf, view

HERE = pathlib.Path(__file__).parent
PAGE_SIZE = 50
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader([HERE / "templates", HERE / "static"]),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["json"] = lambda value: orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
env.filters["dur"] = view.duration
env.filters["clock"] = view.clock
env.filters["iso"] = view.iso
env.filters["size"] = view.size
env.filters["pretty"] = view.pretty
env.filters["error_text"] = view.error_text
env.filters["usd"] = view.usd
env.globals["statuses"] = RUN_STATUSES
rows = env.get_template("_rows.html")  # row macros, shared by pages and live streams


def page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(env.get_template(template).render(**context), status_code=status_code,
                        headers=SECURITY_HEADERS)


def json_response(value: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(value, option=orjson.OPT_INDENT_2), status_code=status_code,
                    media_type="application/json", headers=SECURITY_HEADERS)


def now_ms() -> int:
    return int(time.time() * 1000)


def qs(params: Mapping[str, Any]) -> str:
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def local(target: str) -> str:
    """Only same-site paths after login: never an open redirect."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def form_of(request: Request) -> dict[str, str]:
    parsed = urllib.parse.parse_qs((await request.body()).decode(errors="replace"),
                                   keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


class Dashboard:
    """What every page needs: the executor (its read model and its action paths), and the
    per-request context (CSRF token, navigation, mode)."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.read = executor.read
        self.auth = executor.auth

    async def csrf_for(self, request: Request) -> str:
        return await csrf.token(self.auth, request)

    async def csrf_refused(self, request: Request, form: Mapping[str, str]) -> Response | None:
        if await csrf.valid(self.auth, request, form.get(csrf.CSRF_FIELD)):
            return None
        return page("message.html", 403, title="Form expired",
                    message="This form's security token is missing or stale. Go back, "
                            "reload the page and try again.", csrf="", nav="")

    def gone(self, kind: str, found_id: str) -> str:
        """Why a run or event page has nothing to show: the id is unknown, or retention
        deleted what it named (nothing tells the two apart)."""
        period = retention.period_text(self.executor.settings.retention_ms)
        return (f"There is no {kind} {found_id}. Either it never existed, or it ended more "
                f"than the retention period ({period}) ago and was deleted.")

    async def context(self, request: Request, nav: str) -> dict[str, Any]:
        return {"csrf": await self.csrf_for(request), "nav": nav,
                "production": self.auth.production}
