"""inngest_like/_http.py, the POST client of checkpoints and calls, against a scripted
server on a loopback socket: kept-alive reuse, every way an answer's body may end, a
server that closed an idle connection, limits, timeouts and refusals."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from inngest_like import _http

# what the server does with each request it reads: the bytes it answers, or None to close
# the connection without answering
Script = Callable[[int, bytes], bytes | None]


class Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.script(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[Server, str]]:
    server = Server(script)
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listening.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_a_post_is_sent_whole_and_the_connection_is_kept_alive() -> None:
    async with serving(lambda n, request: ok(b'{"n":%d}' % n, b"X-A: 1\r\nX-A: 2\r\n")) \
            as (server, url):
        client = _http.Client()
        first = await client.post(f"{url}/v1/checkpoints?x=1", b'{"a":1}',
                                  {"Content-Type": "application/json"}, 5)
        second = await client.post(f"{url}/v1/checkpoints?x=1", b"{}", {}, 5)
        await client.close()
    assert (first.status, first.body, second.body) == (200, b'{"n":1}', b'{"n":2}')
    assert first.headers["x-a"] == "2"  # a repeated header: the last one; names lower-case
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/checkpoints?x=1 HTTP/1.1"
    assert b"Host: " + url.removeprefix("http://").encode() in lines
    assert b"Content-Type: application/json" in lines and b"Content-Length: 7" in lines
    assert body == b'{"a":1}'


async def test_chunked_close_delimited_and_informational_answers() -> None:
    answers = {
        1: b"HTTP/1.1 206 Partial\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\n[{}\r\n1\r\n]\r\n0\r\n\r\n",
        2: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after 100"),
        3: b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    }
    async with serving(lambda n, request: answers[n]) as (server, url):
        client = _http.Client()
        got = [await client.post(url + "/", b"", {}, 5) for _ in range(3)]
        await client.close()
    assert [(r.status, r.body) for r in got] == [(206, b"[{}]"), (200, b"after 100"),
                                                 (200, b"until the end")]
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced_if_the_caller_may(
        ) -> None:
    # the server reads the second request on the kept connection and closes it without a
    # byte of answer (it had timed the connection out): an idempotent request goes once
    # more, on a new connection; any other fails (a POST is never sent twice unasked)
    async with serving(lambda n, request: None if n in (2, 4) else ok()) as (server, url):
        client = _http.Client()
        await client.post(url + "/", b"", {}, 5)
        again = await client.post(url + "/", b"", {}, 5, retry_stale=True)
        assert again.status == 200 and server.connections == 2 and len(server.requests) == 3
        with pytest.raises(_http.HTTPError):
            await client.post(url + "/", b"", {}, 5)
        assert len(server.requests) == 4
        await client.close()


async def test_a_stale_connection_is_retried_once_only() -> None:
    # several kept connections all closed by the server: the request is sent twice at most
    live = 0

    def script(n: int, request: bytes) -> bytes | None:
        return ok() if n <= live else None

    async with serving(script) as (server, url):
        client = _http.Client()
        live = 4
        await asyncio.gather(*(client.post(url + "/", b"", {}, 5) for _ in range(4)))
        assert server.connections == 4
        with pytest.raises(_http.HTTPError):
            await client.post(url + "/", b"", {}, 5, retry_stale=True)
        assert len(server.requests) == 4 + 2
        await client.close()


async def test_an_idle_connection_is_not_reused_after_a_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_http, "IDLE_S", 0.05)
    async with serving(lambda n, request: ok()) as (server, url):
        client = _http.Client()
        await client.post(url + "/", b"", {}, 5)
        await client.post(url + "/", b"", {}, 5)
        assert server.connections == 1
        await asyncio.sleep(0.1)
        await client.post(url + "/", b"", {}, 5)
        assert server.connections == 2
        await client.close()


async def test_paths_are_percent_encoded_and_heads_are_capped() -> None:
    answers = {1: ok(), 2: b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 70_000 + b"\r\n\r\n"}
    async with serving(lambda n, request: answers[n]) as (server, url):
        client = _http.Client()
        await client.post(url + "/api inngest?fnId=a b&stepId=é", b"", {}, 5)
        with pytest.raises(_http.TooLarge, match="headers"):
            await client.post(url + "/", b"", {}, 5)
        await client.close()
    assert server.requests[0].startswith(
        b"POST /api%20inngest?fnId=a%20b&stepId=%C3%A9 HTTP/1.1\r\n")


async def test_a_new_connection_closed_without_an_answer_is_an_error() -> None:
    async with serving(lambda n, request: None) as (server, url):
        client = _http.Client()
        with pytest.raises(_http.HTTPError):
            await client.post(url + "/", b"", {}, 5)
        await client.close()
    assert server.connections == 1  # not sent again: the connection was not a reused one


async def test_answers_over_the_limit_are_not_read() -> None:
    answers = {1: ok(b"x" * 100),
               2: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"40\r\n" + b"y" * 64 + b"\r\n" + b"40\r\n" + b"y" * 64 + b"\r\n0\r\n\r\n"}
    async with serving(lambda n, request: answers[n]) as (server, url):
        client = _http.Client(max_body_bytes=80)
        for _ in answers:
            with pytest.raises(_http.TooLarge):
                await client.post(url + "/", b"", {}, 5)
        await client.close()
    assert server.connections == 2  # a connection left mid-answer is never reused


async def test_an_answer_that_does_not_come_times_out_and_its_connection_is_dropped() -> None:

    def script(n: int, request: bytes) -> bytes | None:
        return ok() if n > 1 else b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"

    async with serving(script) as (server, url):
        client = _http.Client()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await client.post(url + "/", b"", {}, 0.2)
        assert loop.time() - started < 2
        assert (await client.post(url + "/", b"", {}, 5)).status == 200
        await client.close()
    assert server.connections == 2


async def test_garbage_refusals_and_headers_that_cannot_be_sent() -> None:
    async with serving(lambda n, request: b"SSH-2.0-OpenSSH\r\n\r\n") as (_, url):
        client = _http.Client()
        with pytest.raises(_http.HTTPError, match="not valid HTTP"):
            await client.post(url + "/", b"", {}, 5)
        with pytest.raises(ValueError, match="CR, LF"):
            await client.post(url + "/", b"", {"X-A": "1\r\nX-Injected: 2"}, 5)
        await client.close()
    with pytest.raises(ValueError, match="not an http"):
        await client.post("ftp://127.0.0.1/", b"", {}, 5)
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    with pytest.raises(_http.ConnectError, match=f"127.0.0.1:{port}"):
        await _http.Client().post(f"http://127.0.0.1:{port}/", b"", {}, 5)


def test_the_same_on_uvloop() -> None:
    """The executor and uvicorn run on uvloop, whose transports differ from asyncio's."""
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(test_a_post_is_sent_whole_and_the_connection_is_kept_alive())
    uvloop.run(test_a_connection_the_server_closed_while_idle_is_replaced_if_the_caller_may())
    uvloop.run(test_an_answer_that_does_not_come_times_out_and_its_connection_is_dropped())
