"""Which HTTP requests reach the executor's routes at all.

A developer's browser can reach a dev server on 127.0.0.1, so any page it visits could
drive the API: a cross-site `text/plain` or form POST needs no CORS preflight, and DNS
rebinding (a hostile name that resolves to 127.0.0.1) can even read the answers. So, before
any route runs:

- `Host` must be one of the server's names (dev: localhost, 127.0.0.1, [::1], the address
  it is bound to, plus `--allowed-hosts`; production: `--allowed-hosts` when given, since
  there every route but `/e` and `/health` needs a key or a login anyway);
- a write whose `Origin` is another site, or `Sec-Fetch-Site: cross-site`, is refused;
- a write to the API (`/e`, `/fn`, `/v0`, `/v1`) must be JSON: a page cannot send that
  content type across sites without a preflight, which this server never grants;
- a body over `max_body_bytes` is refused with 413: at once when its Content-Length says
  so, and a chunked one as soon as that much has arrived.

Dashboard forms are not JSON; they carry CSRF tokens (`dashboard/csrf.py`) besides the
`Origin` check here. Every refusal is a JSON error naming the header and what to do.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
API_PREFIXES = ("/e/", "/fn/", "/v0/", "/v1/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def allowed_hosts(production: bool, bound_host: str, extra: Iterable[str]) -> list[str] | None:
    """The `Host` names to accept; None accepts any (production without a list, or `*`)."""
    names = [name.strip().lower() for entry in extra for name in entry.split(",")
             if name.strip()]
    if "*" in names:
        return None
    if production:
        return names or None
    bound = bound_host.strip("[]").lower()
    wildcard = bound in ("", "0.0.0.0", "::")
    return [*LOOPBACK_NAMES, *([] if wildcard else [bound]), *names]


def split_host(value: str) -> str:
    """The name in a `Host` value, without its port or IPv6 brackets, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def host_allowed(host: str, allowed: list[str]) -> bool:
    if not host:
        return False
    for name in allowed:
        if name.startswith("*.") and (host.endswith(name[1:]) or host == name[2:]):
            return True
        if host == name:
            return True
    # `*.localhost` always resolves to the loopback interface, never through DNS
    return (host.endswith(".localhost") and "localhost" in allowed) or _is_loopback(host, allowed)


def _is_loopback(host: str, allowed: list[str]) -> bool:
    if "127.0.0.1" not in allowed:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _netloc(value: str, scheme: str) -> str:
    """`host:port` lower case, without the scheme's default port."""
    value = value.strip().lower()
    default = {"http": ":80", "https": ":443"}.get(scheme, "")
    return value[: -len(default)] if default and value.endswith(default) else value


def same_origin(origin: str, host: str) -> bool:
    """Does a browser's `Origin` name the server the request was sent to (`Host`)?"""
    parts = urllib.parse.urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # `null` (sandboxed frames, file://) and anything odd
    return _netloc(parts.netloc, parts.scheme) in (_netloc(host, "http"),
                                                   _netloc(host, "https"))


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


class RequestGuard:
    """Pure ASGI middleware (so bodies stream through it): see the module docstring."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: list[str] | None,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan (the executor serves no websockets)
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message = refusal
            await _send_error(send, status, message)
            return
        if "content-length" not in headers and scope["method"] not in SAFE_METHODS:
            # chunked: the size shows only while reading, so read it here, up to the cap
            try:
                body = await self._read_capped(receive)
            except _ClientLeft:
                return  # nobody to answer, and half a body must not be acted on
            if body is None:
                await _send_error(send, 413, self._too_large())
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host_header = headers.get("host", "")
        if self.allowed_hosts is not None and scope["path"] != "/health":  # probes use IPs
            host = split_host(host_header)
            if not host_allowed(host, self.allowed_hosts):
                return 400, (f"Host: {host or '(missing)'!r} is not a name of this server; "
                             f"to accept it, start the executor with --allowed-hosts {host}")
        method = scope["method"]
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and not same_origin(origin, host_header):
            return 403, f"Origin: {origin!r} is another site; cross-site writes are refused"
        if headers.get("sec-fetch-site") == "cross-site":
            return 403, "Sec-Fetch-Site: cross-site writes are refused"
        path = scope["path"]
        if method in JSON_WRITE_METHODS and path.startswith(API_PREFIXES):
            content_type = headers.get("content-type", "")
            if not is_json(content_type):
                got = _media_type(content_type) or "none"
                return 415, f"Content-Type: must be application/json (got {got})"
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body_bytes:
            return 413, self._too_large()
        return None

    def _too_large(self) -> str:
        return (f"body: larger than {self.max_body_bytes} bytes, the limit of this server "
                "(--max-request-bytes)")

    async def _read_capped(self, receive: Receive) -> bytes | None:
        """A chunked body, or None once it passes the cap (the rest is never read)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeft
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return bytes(body)


class _ClientLeft(Exception):
    """The client disconnected before its whole body arrived."""


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands over an already read body first (then waits for disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_error(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message, "status": status})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
