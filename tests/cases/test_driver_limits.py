"""Issue 10.5: the executor's calls to apps follow no redirect (a 307 would re-POST the
signed run state anywhere), give up connecting after a connect timeout distinct from the
step timeout, and refuse an answer over the size limit; each fails its run with a clear
error while the executor goes on. Real executor and redis-server, a hostile app, and a
listener that never completes a TCP handshake."""

from __future__ import annotations

import pathlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from ..hostile import HostileStack, hostile_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStack]:
    directory: pathlib.Path = tmp_path_factory.mktemp("driver")
    with hostile_stack(directory, ["--max-response-bytes", str(1024 * 1024),
                                   "--connect-timeout", "1"]) as stack:
        yield stack


def test_a_redirect_is_not_followed(hostile: HostileStack) -> None:
    hostile.register("redirects", "/redirect", "test/redirect")
    run = hostile.executor.wait_run(hostile.executor.send("test/redirect"), "Failed")
    message = run["output"]["message"]
    assert "307" in message and "redirects are not followed" in message, message
    assert "/redirect" in hostile.seen()
    assert "/captured" not in hostile.seen()  # the signed run state went nowhere else
    assert hostile.alive()


def test_an_answer_over_the_limit_fails_the_run(hostile: HostileStack) -> None:
    hostile.register("answers-huge", "/huge?mb=3", "test/huge", retries=3)
    run = hostile.executor.wait_run(hostile.executor.send("test/huge"), "Failed")
    message = run["output"]["message"]
    assert f"larger than {1024 * 1024} bytes" in message, message
    assert hostile.seen().count("/huge") == 1  # the same answer would come again: no retry
    assert hostile.alive()


def test_an_answer_under_the_limit_is_read(hostile: HostileStack) -> None:
    hostile.register("answers-big", "/huge?mb=0", "test/big")
    run = hostile.executor.wait_run(hostile.executor.send("test/big"), "Completed")
    assert run["output"] == ""


def test_connecting_has_its_own_timeout(hostile: HostileStack) -> None:
    # a listener whose accept queue is full: the kernel drops further SYNs, so connecting
    # hangs (what a firewalled or dead host does), while the step timeout is two hours
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    try:
        body = {"appName": "blackhole", "url": f"http://127.0.0.1:{port}/api",
                "functions": [{"id": "blackholed", "name": "b", "triggers": [
                    {"event": "test/blackhole"}], "steps": {"step": {"id": "step", "runtime": {
                        "type": "http", "url": f"http://127.0.0.1:{port}/api?fnId=blackholed"},
                        "retries": {"attempts": 0}}}}]}
        assert httpx.post(f"{hostile.executor.url}/fn/register", json=body,
                          timeout=10).status_code == 200
        started = time.monotonic()
        run = hostile.executor.wait_run(hostile.executor.send("test/blackhole"), "Failed",
                                        timeout=60)
        assert time.monotonic() - started < 30
        message = run["output"]["message"]
        assert "could not connect" in message and "within 1s" in message, message
    finally:
        filler.close()
        listener.close()
