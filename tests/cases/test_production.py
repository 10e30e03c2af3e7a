"""Production mode (`inngest-like start`): signed calls verified by the SDK, Bearer-guarded
API, event keys added and revoked at run time, dashboard login, key rotation, and no secret
in any log or answer. Real processes."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from executor import keys
from inngest_like import signing

from ..procs import App, Executor, RedisServer, free_port, wait_for

pytestmark = pytest.mark.real

KEY_A = "signkey-test-" + secrets.token_hex(32)
KEY_B = "signkey-test-" + secrets.token_hex(32)
EVENT_KEY = "ek-" + secrets.token_hex(16)
PASSWORD = "pw-" + secrets.token_hex(8)


class Prod:
    def __init__(self, directory: pathlib.Path) -> None:
        self.dir = directory
        self.redis = RedisServer(directory)
        self.redis.start()
        self.exec_port, self.app_port = free_port(), free_port()
        self.counter = directory / "counter.txt"
        self.app = self._app(KEY_A, None)
        self.executor = self._executor(KEY_A, None)

    def _app(self, key: str, fallback: str | None) -> App:
        env = {"INNGEST_DEV": "", "INNGEST_SIGNING_KEY": key, "COUNTER_FILE": str(self.counter),
               "INNGEST_EVENT_KEY": EVENT_KEY}
        if fallback:
            env["INNGEST_SIGNING_KEY_FALLBACK"] = fallback
        return App(self.dir, "tests.apps.durable_app:app", f"http://127.0.0.1:{self.exec_port}",
                   port=self.app_port, env=env, name=f"app-{time.monotonic_ns()}")

    def _executor(self, key: str, fallback: str | None) -> Executor:
        extra = ["--signing-key", key, "--event-key", EVENT_KEY,
                 "--dashboard-password", PASSWORD]
        if fallback:
            extra += ["--signing-key-fallback", fallback]
        ex = Executor(self.dir, self.redis.url, [f"http://127.0.0.1:{self.app_port}/api/inngest"],
                      port=self.exec_port, extra=extra, name=f"exec-{time.monotonic_ns()}")
        ex.args[ex.args.index("dev")] = "start"
        return ex

    def bearer(self, key: str = KEY_A) -> dict[str, str]:
        return {"Authorization": f"Bearer {signing.bearer(key)}"}

    def send(self, name: str, key: str = EVENT_KEY) -> httpx.Response:
        return httpx.post(f"{self.executor.url}/e/{key}", json={"name": name}, timeout=10)

    def wait_run(self, event_id: str, key: str = KEY_A) -> dict[str, object]:
        def done() -> dict[str, object] | None:
            runs = httpx.get(f"{self.executor.url}/v1/events/{event_id}/runs",
                             headers=self.bearer(key), timeout=5).json()["data"]
            return runs[0] if runs and runs[0]["status"] == "Completed" else None

        return wait_for(done, 30, f"a run of {event_id} to complete")

    def synced(self) -> None:
        wait_for(lambda: any(
            f["id"] == "durable-ten-steps" for f in httpx.get(
                f"{self.executor.url}/v1/functions", headers=self.bearer(), timeout=5
            ).json().get("data", [])), 30, "the app to sync in production mode")


@pytest.fixture(scope="module")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prod]:
    p = Prod(tmp_path_factory.mktemp("prod"))
    p.executor.start()
    p.app.start()
    p.synced()
    yield p
    p.app.stop()
    p.executor.stop()
    p.redis.stop()


def test_signed_calls_run_functions(prod: Prod) -> None:
    answer = prod.send("test/sync")
    assert answer.status_code == 200, answer.text
    run = prod.wait_run(answer.json()["ids"][0])
    assert run["output"] == 41


def test_sdk_refuses_unsigned_tampered_wrong_and_stale_calls(prod: Prod) -> None:
    body = orjson.dumps({"event": {"name": "test/sync", "data": {}, "id": "x", "ts": 1},
                         "events": [], "steps": {}, "use_api": False,
                         "ctx": {"run_id": "r", "attempt": 0, "stack": {"stack": []},
                                 "disable_immediate_execution": False}})
    body = signing.canonical(body)  # the protocol signs JCS-canonical bytes
    url = f"{prod.app.url}?fnId=durable-sync-fn&stepId=step"
    good = signing.sign(body, KEY_A)
    cases = {
        "missing": {},
        "tampered": {"X-Inngest-Signature": signing.sign(body.replace(b'"r"', b'"q"'), KEY_A)},
        "wrong key": {"X-Inngest-Signature": signing.sign(body, KEY_B)},
        "stale": {"X-Inngest-Signature": signing.sign(body, KEY_A, int(time.time()) - 600)},
    }
    for what, headers in cases.items():
        answer = httpx.post(url, content=body, headers=headers, timeout=10)
        assert answer.status_code == 401, (what, answer.text)
        assert answer.json()["code"] in ("header_missing", "sig_verification_failed")
    assert httpx.post(url, content=body, headers={"X-Inngest-Signature": good},
                      timeout=10).status_code == 206


def test_unknown_event_key_refused_and_nothing_stored(prod: Prod) -> None:
    client = prod.redis.client()
    before = client.zcard(keys.events(0))
    answer = prod.send("test/sync", key="not-a-key-" + secrets.token_hex(8))
    assert answer.status_code == 401
    assert answer.json()["error"] == "unknown event key"
    assert client.zcard(keys.events(0)) == before


def test_event_keys_added_and_revoked_without_restart(prod: Prod) -> None:
    new_key = "rotated-" + secrets.token_hex(16)
    assert prod.send("test/sync", key=new_key).status_code == 401
    added = subprocess.run(
        [sys.executable, "-m", "executor", "keys", "add", "--redis-url", prod.redis.url,
         "--key", new_key, "--name", "ci"], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    assert prod.send("test/sync", key=new_key).status_code == 200
    listed = httpx.get(f"{prod.executor.url}/v1/event-keys", headers=prod.bearer()).json()
    assert new_key not in str(listed)  # only fingerprints and hints
    fingerprint = next(k["fingerprint"] for k in listed["data"] if k["name"] == "ci")
    revoked = httpx.delete(f"{prod.executor.url}/v1/event-keys/{fingerprint}",
                           headers=prod.bearer())
    assert revoked.status_code == 200
    assert prod.send("test/sync", key=new_key).status_code == 401


def test_api_requires_bearer_and_register_too(prod: Prod) -> None:
    url = prod.executor.url
    assert httpx.get(f"{url}/v1/functions").status_code == 401
    assert httpx.get(f"{url}/v1/functions", headers=prod.bearer(KEY_B)).status_code == 401
    assert httpx.get(f"{url}/v1/functions", headers={
        "Authorization": f"Bearer {KEY_A}"}).status_code == 200  # plain key, prefixed: accepted
    client = prod.redis.client()
    version = client.get(keys.REGISTRY_VERSION)
    refused = httpx.post(f"{url}/fn/register", json={"appName": "evil", "url": "http://x",
                                                      "functions": []})
    assert refused.status_code == 401
    assert client.get(keys.REGISTRY_VERSION) == version
    assert httpx.get(f"{url}/v0/runs/x/actions").status_code == 401


def test_dashboard_login(prod: Prod) -> None:
    url = prod.executor.url
    page = httpx.get(f"{url}/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    browser = httpx.Client(base_url=url, timeout=10)
    form = browser.get("/login").text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    wrong = browser.post("/login", data={"password": "nope", "next": "/", "csrf": csrf})
    assert wrong.status_code == 401
    right = browser.post("/login", data={"password": PASSWORD, "next": "//evil.example",
                                         "csrf": csrf}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    session = right.cookies["il_session"]
    browser.close()
    assert httpx.get(f"{url}/", cookies={"il_session": session}).status_code == 200
    assert httpx.get(f"{url}/v1/functions", cookies={"il_session": session}).status_code == 200


def test_key_rotation_keeps_calls_succeeding(prod: Prod) -> None:
    # 1. the app learns the new key first, keeping the old one as fallback
    prod.app.stop()
    prod.app = prod._app(KEY_B, KEY_A)
    prod.app.start()
    first = prod.send("test/sync").json()["ids"][0]
    assert prod.wait_run(first)["output"] == 41
    # 2. the executor switches to the new key (old one still accepted on the API)
    prod.executor.stop()
    prod.executor = prod._executor(KEY_B, KEY_A)
    prod.executor.start()
    second = prod.send("test/sync").json()["ids"][0]
    assert prod.wait_run(second, KEY_B)["output"] == 41


def test_no_secret_in_logs(prod: Prod) -> None:
    logs = "".join(p.read_text(errors="replace") for p in prod.dir.glob("*.log"))
    for secret in (KEY_A, signing.strip_prefix(KEY_A), KEY_B, EVENT_KEY, PASSWORD):
        assert secret not in logs
