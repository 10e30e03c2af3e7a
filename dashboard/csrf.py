"""CSRF tokens for every dashboard form, the login included, in dev mode as in production.

Signed double submit: each browser gets a random `il_csrf` cookie (HttpOnly, SameSite=
Strict) the first time it loads a page; a form's token is an HMAC, under a secret kept in
Redis, of that cookie and of the login session when there is one. A page on another site
can make the browser send the cookie (not even that, with SameSite=Strict) but cannot read
the token, so it cannot forge a form. Dev mode has no login, so the cookie is what a token
is bound to there.
"""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from executor.auth import SESSION_COOKIE, Auth

CSRF_COOKIE = "il_csrf"
CSRF_FIELD = "csrf"


def _binding(request: Request) -> str | None:
    browser = request.cookies.get(CSRF_COOKIE)
    if not browser:
        return None
    return f"{browser}|{request.cookies.get(SESSION_COOKIE) or ''}"


async def token(auth: Auth, request: Request) -> str:
    """The token this browser's forms carry (pages only: see `CsrfCookie`)."""
    binding = _binding(request)
    return await auth.csrf_token(binding) if binding else ""


async def valid(auth: Auth, request: Request, submitted: str | None) -> bool:
    return await auth.csrf_ok(_binding(request), submitted)


class CsrfCookie:
    """Gives a browser without one its CSRF cookie: the cookie is added to the request as
    if the browser had sent it (so the page rendered now carries a matching token) and set
    on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._sent(scope):
            await self.app(scope, receive, send)
            return
        value = secrets.token_urlsafe(32)
        cookie_header = f"{CSRF_COOKIE}={value}".encode()
        headers = list(scope["headers"])
        for i, (name, existing) in enumerate(headers):
            if name == b"cookie":
                headers[i] = (name, existing + b"; " + cookie_header)
                break
        else:
            headers.append((b"cookie", cookie_header))
        scope = {**scope, "headers": headers}
        secure = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                attributes = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
                message = {**message, "headers": [
                    *message.get("headers", []),
                    (b"set-cookie", cookie_header + attributes.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _sent(scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if path.startswith(("/e/", "/fn/", "/v0/", "/v1/", "/static/", "/stream/", "/health")):
            return True  # machines and assets: no forms, no cookie
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                parsed: SimpleCookie = SimpleCookie()
                try:
                    parsed.load(value.decode("latin-1"))
                except Exception:
                    return False
                if parsed.get(CSRF_COOKIE) and parsed[CSRF_COOKIE].value:
                    return True
        return False
