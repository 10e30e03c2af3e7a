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
    async def login_page(request: Request, next: str = "/") -> Response:
        if not auth.production:
            return RedirectResponse("/", status_code=303)
        return page("login.html", next=local(next), error=None, nav="",
                    csrf=await dash.csrf_for(request))

    @routes.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        if refused := await dash.csrf_refused(request, form):
            return refused
        password = form.get("password", "")
        target = local(form.get("next") or "/")
        client = request.client.host if request.client else "unknown"
        if wait_s := await auth.login_wait_s(client):
            return page("login.html", 429, next=target, nav="",
                        csrf=await dash.csrf_for(request),
                        error=f"Too many wrong passwords: try again in {wait_s // 60 + 1} "
                              "minutes.")
        if not auth.password_ok(password):
            await auth.login_failed(client)
            return page("login.html", 401, next=target, error="Wrong password.", nav="",
                        csrf=await dash.csrf_for(request))
        await auth.login_succeeded(client)
        token = await auth.new_session()
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @routes.post("/logout")
    async def logout(request: Request) -> Response:
        if refused := await dash.csrf_refused(request, await form_of(request)):
            return refused
        await auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    return routes
