"""Login and logout (production mode; dev mode has no login)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from executor.auth import SESSION_COOKIE, SESSION_TTL_S

from ..render import Dashboard, form_of, local, page


def router(dash: Dashboard) -> APIRouter:
    routes = APIRouter(include_in_schema=False)
    auth = dash.auth

    @routes.get("/login")
    async def login_page(next: str = "/") -> Response:
        if not auth.production:
            return RedirectResponse("/", status_code=303)
        return page("login.html", next=local(next), error=None, nav="", csrf="")

    @routes.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        password = form.get("password", "")
        target = local(form.get("next") or "/")
        if not auth.password_ok(password):
            return page("login.html", 401, next=target, error="Wrong password.", nav="",
                        csrf="")
        token = await auth.new_session()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @routes.get("/logout")
    async def logout(request: Request) -> Response:
        await auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    return routes
