"""Issue 10.7 (sessions): logout is a POST with a CSRF token, the login form carries one
too, failed logins are throttled per client, and behind a TLS-terminating proxy
(`--trust-proxy`) the cookies are `Secure` and the client is the one the proxy names.
Two production executors on one real redis-server: one trusting 127.0.0.1 as its proxy,
one trusting nobody."""

from __future__ import annotations

import pathlib
import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from executor.auth import LOGIN_FAILURES_ALLOWED

from ..conftest import _keep_logs
from ..procs import Executor, RedisServer

pytestmark = pytest.mark.real

KEY = "signkey-prod-" + secrets.token_hex(32)
PASSWORD = "pw-" + secrets.token_hex(8)


class Pair:
    def __init__(self, direct: Executor, proxied: Executor) -> None:
        self.direct = direct  # reached without a proxy: forwarded headers are not believed
        self.proxied = proxied  # behind a proxy on 127.0.0.1 (--trust-proxy 127.0.0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    directory: pathlib.Path = tmp_path_factory.mktemp("sessions")
    redis = RedisServer(directory)
    redis.start()
    made = []
    for name, extra in (("direct", []), ("proxied", ["--trust-proxy", "127.0.0.1"])):
        executor = Executor(directory, redis.url, [], name=name, extra=[
            "--signing-key", KEY, "--dashboard-password", PASSWORD, *extra])
        executor.args[executor.args.index("dev")] = "start"
        made.append(executor)
    try:
        for executor in made:
            executor.start()
        yield Pair(*made)
    finally:
        for executor in made:
            executor.stop()
        redis.stop()
        _keep_logs(directory)


def browser(executor: Executor, source: str = "127.0.0.1") -> httpx.Client:
    """A client with its own cookie jar, connecting from `source` (any 127.x address)."""
    return httpx.Client(base_url=executor.url, timeout=10,
                        transport=httpx.HTTPTransport(local_address=source))


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def login(client: httpx.Client, password: str = PASSWORD,
          headers: dict[str, str] | None = None) -> httpx.Response:
    token = csrf_of(client.get("/login", headers=headers))
    return client.post("/login", data={"password": password, "csrf": token, "next": "/"},
                       headers=headers, follow_redirects=False)


def test_login_needs_its_csrf_token(pair: Pair) -> None:
    with browser(pair.direct) as client:
        client.get("/login")
        refused = client.post("/login", data={"password": PASSWORD, "next": "/"})
        assert refused.status_code == 403
        assert "il_session" not in refused.cookies
        assert login(client).status_code == 303


def test_logout_is_a_post_with_csrf(pair: Pair) -> None:
    with browser(pair.direct) as client:
        assert login(client).status_code == 303
        page = client.get("/")
        assert page.status_code == 200
        assert 'action="/logout"' in page.text and 'href="/logout"' not in page.text
        assert client.get("/logout").status_code == 405  # a link or <img> cannot log out
        assert client.post("/logout", data={}).status_code == 403
        assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
        done = client.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False)
        assert done.status_code == 303
        assert client.get("/", follow_redirects=False).status_code == 303  # to the login


def test_failed_logins_are_throttled_per_client(pair: Pair) -> None:
    with browser(pair.direct, "127.0.0.3") as attacker:
        for _ in range(LOGIN_FAILURES_ALLOWED):
            assert login(attacker, "wrong").status_code == 401
        locked = login(attacker, PASSWORD)  # even the right password waits now
        assert locked.status_code == 429
        assert "Too many wrong passwords" in locked.text
        assert "il_session" not in locked.cookies
        # a forged X-Forwarded-For is not believed without --trust-proxy
        spoofed = login(attacker, PASSWORD, headers={"X-Forwarded-For": "198.51.100.9"})
        assert spoofed.status_code == 429
    with browser(pair.direct, "127.0.0.4") as someone_else:
        assert login(someone_else).status_code == 303


def test_behind_a_trusted_proxy_cookies_are_secure_and_clients_are_forwarded(
        pair: Pair) -> None:
    tls = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    with browser(pair.proxied) as client:
        page = client.get("/login", headers=tls)
        csrf_cookie = page.headers["set-cookie"]
        assert "; secure" in csrf_cookie.lower()  # httpx keeps it for https: send it by hand
        sent = {**tls, "Cookie": csrf_cookie.split(";", 1)[0]}
        done = client.post("/login", data={"password": PASSWORD, "csrf": csrf_of(page),
                                           "next": "/"}, headers=sent, follow_redirects=False)
        assert done.status_code == 303, done.text
        session_cookie = done.headers["set-cookie"].lower()
        assert "il_session=" in session_cookie and "secure" in session_cookie
    with browser(pair.direct) as client:  # not trusted: the same headers change nothing
        page = client.get("/login", headers=tls)
        assert "secure" not in page.headers["set-cookie"].lower()
        done = client.post("/login", data={"password": PASSWORD, "csrf": csrf_of(page),
                                           "next": "/"}, headers=tls, follow_redirects=False)
        assert done.status_code == 303
        assert "secure" not in done.headers["set-cookie"].lower()
    # the proxy's clients are throttled one by one, by the address the proxy names
    with browser(pair.proxied) as client:
        for _ in range(LOGIN_FAILURES_ALLOWED):
            assert login(client, "wrong", headers={"X-Forwarded-For": "203.0.113.66"}
                         ).status_code == 401
        assert login(client, headers={"X-Forwarded-For": "203.0.113.66"}).status_code == 429
        assert login(client, headers={"X-Forwarded-For": "203.0.113.67"}).status_code == 303
