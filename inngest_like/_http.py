"""POST over kept-alive HTTP/1.1 connections, parsed by httptools: the transport of the
two requests on every step's path, the SDK's checkpoints and the executor's calls.

aiohttp spends about 210 us of CPU on a small POST and its answer here (its request and
response objects, header multidicts, tracing signals, timers); the same round trip on a
bare connection costs about 50 us, and takes half the wall time (bench/driver.py).
Both ends are ours or an Inngest SDK's, and all these requests need is a POST with a body,
its status, headers and body back, timeouts and a cap on the answer's size: no redirects
(never followed), cookies, proxies or compression.

One request at a time per connection (no pipelining); a connection goes back to its
origin's idle list when its answer is complete and both sides keep it alive, and is not
reused after IDLE_S (servers close idle connections after about 5 s: uvicorn, Node; and a
middlebox may drop an idle flow without a word). A POST is not sent twice unless the caller
says it may be (`retry_stale`, for idempotent requests): then one sent on a kept connection
that closed with no byte of an answer goes once more, on a new connection.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple, cast

import httptools

MAX_IDLE = 128  # idle connections kept per origin (the executor calls an app from up to
# its worker's slots at once); more are closed when their answer is read
IDLE_S = 4.0  # a connection idle this long is closed, not reused
MAX_HEAD_BYTES = 64 * 1024  # an answer's status line and headers


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # names lower-case; repeated headers joined with ", "
    body: bytes


class HTTPError(Exception):
    """The request got no complete answer: the connection failed, was closed, or the
    answer was not HTTP."""


class ConnectError(HTTPError):
    """Could not connect (refused, unreachable, or not within the connect timeout)."""


class TooLarge(HTTPError):
    """The answer's body is larger than the client's limit (it was not read further)."""


class _Stale(HTTPError):
    """The connection closed before any byte of the answer came."""


_SAFE = "/%:@!$&'()*+,;=-._~"  # characters a path keeps as they are (RFC 3986)


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int


class _Target(NamedTuple):
    origin: _Origin
    head: bytes  # the request line and Host header


def _target(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # percent-encoded as aiohttp sent it (a space in a registered URL or a step id)
    path = urllib.parse.quote(parts.path or "/", safe=_SAFE)
    if parts.query:
        path += "?" + urllib.parse.quote(parts.query, safe=_SAFE + "?")
    host = parts.netloc.rpartition("@")[2]
    if not host.isascii():
        host = host.encode("idna").decode()
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1")
    return _Target(_Origin(parts.scheme, parts.hostname, port), head)


def _header_lines(headers: Mapping[str, str]) -> bytes:
    out = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"header {name!r}: names and values may not hold CR, LF (or a "
                             "colon, in a name)")
        out.append(f"{name}: {value}\r\n")
    return "".join(out).encode("latin-1")


class _Connection(asyncio.Protocol):
    """One connection: a request written, its answer parsed as it arrives."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[Response] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.got_bytes = False  # of the current answer
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.keep_alive = False  # both sides keep the connection after this answer
        self.head_bytes = 0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(HTTPError(f"the answer is not valid HTTP: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is None or self.answer.done():
            return
        if not self.got_bytes:
            self._fail(_Stale("the connection closed before an answer"))
        elif exc is None and self.headers_done and self._close_delimited():
            self._resolve()  # no length, not chunked: the body ends with the connection
        else:
            self._fail(HTTPError("the connection closed in the middle of the answer"))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._fail(TooLarge(f"the answer's headers are over {MAX_HEAD_BYTES} bytes"))
            return
        # a repeated header: the last one counts
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = self.parser.should_keep_alive()  # (not known after the message)
        length = self.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            self._fail(TooLarge(f"the answer's body is {length} bytes"))

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body_bytes:
            self._fail(TooLarge(f"the answer's body is over {self.max_body_bytes} bytes"))
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:  # informational: the answer follows
            self._reset()
            self.got_bytes = True
            return
        self._resolve()

    # --
    def _close_delimited(self) -> bool:
        return ("content-length" not in self.headers
                and "chunked" not in self.headers.get("transfer-encoding", "").lower())

    def _resolve(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(Response(self.parser.get_status_code(), self.headers,
                                            b"".join(self.chunks)))

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def send(self, request: bytes) -> Response:
        """Write `request` and wait for its whole answer (the caller bounds the wait, and
        closes the connection if it gives up: an answer may still come)."""
        assert self.transport is not None
        self._reset()
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.answer
        finally:
            self.answer = None

    def reusable(self, now: float) -> bool:
        return (not self.closed and self.transport is not None and self.keep_alive
                and not self.transport.is_closing() and now - self.idle_since < IDLE_S)


class Client:
    """Kept-alive connections per origin, for one event loop."""

    def __init__(self, *, connect_timeout_s: float = 10.0,
                 max_body_bytes: int = 64 * 1024 * 1024) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.max_body_bytes = max_body_bytes
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._tls: ssl.SSLContext | None = None
        self.closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   timeout_s: float, *, retry_stale: bool = False) -> Response:
        """POST `body` to `url` with `headers` (Content-Length is added); the answer as it
        came. Raises ConnectError, TooLarge, HTTPError, TimeoutError (after `timeout_s` for
        the whole request) or ValueError (a URL or header that cannot be sent).
        `retry_stale`: the request may be sent twice (it is idempotent)."""
        target = self._targets.get(url)
        if target is None:
            target = _target(url)
            if len(self._targets) > 1024:  # calls name their step in the URL: keep it small
                self._targets.clear()
            self._targets[url] = target
        request = b"".join((target.head, _header_lines(headers),
                            b"Content-Length: %d\r\n\r\n" % len(body), body))
        async with asyncio.timeout(timeout_s):
            connection = self._take(target.origin)
            if connection is None:
                return await self._send(target.origin, await self._connect(target.origin),
                                        request)
            try:
                return await self._send(target.origin, connection, request)
            except _Stale:
                if not retry_stale:
                    raise
            # the server closed that connection while it was idle: once, on a new one
            return await self._send(target.origin, await self._connect(target.origin),
                                    request)

    async def _send(self, origin: _Origin, connection: _Connection,
                    request: bytes) -> Response:
        try:
            response = await connection.send(request)
        except BaseException:  # failed, timed out or cancelled: not reusable
            connection.close()
            raise
        self._give_back(origin, connection)
        return response

    def _take(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if connection.reusable(now):
                return connection
            connection.close()
        return None

    def _give_back(self, origin: _Origin, connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        connection.idle_since = now = asyncio.get_running_loop().time()
        while idle and not idle[0].reusable(now):  # the longest idle first
            idle.pop(0).close()
        if connection.reusable(now) and len(idle) < MAX_IDLE and not self.closed:
            idle.append(connection)
        else:
            connection.close()

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self.max_body_bytes), origin.host, origin.port,
                    ssl=tls, server_hostname=origin.host if tls else None)
        except TimeoutError as exc:
            raise ConnectError(f"could not connect to {origin.host}:{origin.port} within "
                               f"{self.connect_timeout_s:g}s") from exc
        except OSError as exc:
            raise ConnectError(f"could not connect to {origin.host}:{origin.port}: "
                               f"{exc.strerror or exc}") from exc
        return connection

    async def close(self) -> None:
        self.closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
