"""Issue 10.3: a web page a developer visits cannot drive the dev server. Cross-site writes
(the `text/plain` register of a `*` function that receives every event), DNS rebinding
(a foreign `Host`), and dashboard forms without a CSRF token are refused; the SDKs' own
JSON requests still pass. A real dev executor on real redis-server."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pytest

from ..conftest import executor_alone
from ..procs import Executor

pytestmark = pytest.mark.real

EVIL_REGISTER = orjson.dumps({
    "appName": "evil", "url": "http://evil.example/api",
    "functions": [{"id": "evil-all", "name": "all", "triggers": [{"event": "*"}],
                   "steps": {"step": {"id": "step", "runtime": {
                       "type": "http", "url": "http://evil.example/api?fnId=evil-all"}}}}]})


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    with executor_alone(tmp_path_factory.mktemp("devguard"),
                        ["--allowed-hosts", "executor.internal"]) as executor:
        yield executor


def functions(dev: Executor) -> list[str]:
    return dev.functions()


@pytest.mark.parametrize(("headers", "status", "words"), [
    ({"Content-Type": "text/plain"}, 415, "Content-Type: must be application/json (got text/plain)"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "got application/x-www-form"),
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415, "got multipart/form-data"),
    ({}, 415, "got none"),
    ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403,
     "Origin: 'http://evil.example' is another site"),
    ({"Content-Type": "application/json", "Origin": "null"}, 403, "Origin: 'null'"),
    ({"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403,
     "Sec-Fetch-Site"),
])
def test_cross_site_register_is_refused_and_registers_nothing(
        dev: Executor, headers: dict[str, str], status: int, words: str) -> None:
    before = functions(dev)
    answer = httpx.post(f"{dev.url}/fn/register", content=EVIL_REGISTER, headers=headers,
                        timeout=10)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"], answer.text
    assert answer.json()["status"] == status
    assert functions(dev) == before


@pytest.mark.parametrize("path", ["/e/dev-key", "/v1/cancellations", "/v1/runs/x/rerun",
                                  "/v1/checkpoint/x/async", "/v1/event-keys"])
def test_every_api_write_needs_json(dev: Executor, path: str) -> None:
    answer = httpx.post(f"{dev.url}{path}", content=b'{"name": "a/b"}',
                        headers={"Content-Type": "text/plain"}, timeout=10)
    assert answer.status_code == 415, answer.text


def test_json_from_the_same_origin_passes(dev: Executor) -> None:
    answer = httpx.post(f"{dev.url}/e/dev-key", json={"name": "test/x"}, timeout=10,
                        headers={"Origin": dev.url, "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8288", "127.0.0.1.evil.example",
                                  "localhost.evil.example", "", "executor.internal.evil.example"])
def test_dns_rebinding_host_is_refused(dev: Executor, host: str) -> None:
    for path in ("/v1/functions", "/", "/events"):
        answer = httpx.get(f"{dev.url}{path}", headers={"Host": host}, timeout=10)
        assert answer.status_code == 400, (host, path, answer.text)
        error = answer.json()["error"]
        assert error.startswith("Host:") and "--allowed-hosts" in error, error


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "app.localhost",
                                  "executor.internal", "EXECUTOR.internal"])
def test_the_servers_own_names_are_accepted(dev: Executor, host: str) -> None:
    answer = httpx.get(f"{dev.url}/v1/functions", timeout=10,
                       headers={"Host": f"{host}:{dev.port}"})
    assert answer.status_code == 200, (host, answer.text)


def test_dashboard_forms_need_a_csrf_token_in_dev_mode(dev: Executor) -> None:
    event = {"name": "dash/test", "data": "{}"}
    with httpx.Client(base_url=dev.url, timeout=10) as browser:
        page = browser.get("/events")
        assert page.status_code == 200
        assert "il_csrf" in browser.cookies
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert token, "the send form carries a CSRF token in dev mode"
        assert browser.post("/events", data=event).status_code == 403
        assert browser.post("/events", data={**event, "csrf": "0" * 64}).status_code == 403
        for path in ("/runs/nope/cancel", "/runs/nope/rerun", "/apps/nope/sync"):
            assert browser.post(path, data={}).status_code == 403, path
        sent = browser.post("/events", data={**event, "csrf": token.group(1)})
        assert sent.status_code == 303 and sent.headers["location"].startswith("/events/")
    with httpx.Client(base_url=dev.url, timeout=10) as other_browser:
        other_browser.get("/events")  # its own cookie: the first browser's token is not its
        refused = other_browser.post("/events", data={**event, "csrf": token.group(1)})
        assert refused.status_code == 403
