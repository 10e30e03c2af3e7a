"""Issue 10.4: in production the SDK never takes its serve URL from the `Host` header. An
unauthenticated PUT with a forged Host used to re-register every function at the
attacker's URL; now the URL comes from `INNGEST_SERVE_ORIGIN` or from a signed in-band
sync, whose answer the executor accepts only when it is signed with its own key. The SDK's
API calls retry with the fallback key on 401/403 (keys rotated on the server first).
Real processes: a production executor, our SDK's apps in production mode, a hostile app."""

from __future__ import annotations

import pathlib
import secrets
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inngest_like import signing

from ..conftest import _keep_logs
from ..procs import App, Executor, Proc, RedisServer, free_port, wait_for

pytestmark = pytest.mark.real

KEY_A = "signkey-prod-" + secrets.token_hex(32)
KEY_B = "signkey-prod-" + secrets.token_hex(32)
EVENT_KEY = "ek-" + secrets.token_hex(16)


class Setup:
    def __init__(self, executor: Executor, in_band_app: App, origin_app: App,
                 hostile_origin: str) -> None:
        self.executor = executor
        self.in_band_app = in_band_app  # syncs in-band only: its API base is a dead port
        self.origin_app = origin_app  # out-of-band, INNGEST_SERVE_ORIGIN, new key + fallback
        self.hostile_origin = hostile_origin

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.executor.url}{path}", timeout=10,
                           headers={"Authorization": f"Bearer {signing.bearer(KEY_A)}"})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def apps(self) -> dict[str, dict[str, Any]]:
        return {a["id"]: a for a in self.get("/v1/apps")}


def prod_app(directory: pathlib.Path, target: str, executor_port: int,
             env: dict[str, str]) -> App:
    return App(directory, target, f"http://127.0.0.1:{executor_port}", env={
        "INNGEST_DEV": "", "INNGEST_SIGNING_KEY": KEY_A, "INNGEST_EVENT_KEY": EVENT_KEY,
        "COUNTER_FILE": str(directory / "counter.txt"), **env})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory: pathlib.Path = tmp_path_factory.mktemp("synctrust")
    redis = RedisServer(directory)
    redis.start()
    exec_port, origin_port, hostile_port = free_port(), free_port(), free_port()
    in_band_app = prod_app(directory, "tests.apps.durable_app:app", exec_port, {
        "INNGEST_API_BASE_URL": f"http://127.0.0.1:{free_port()}"})  # nobody there
    origin_app = prod_app(directory, "tests.apps.primitives_app:app", exec_port, {
        "INNGEST_SIGNING_KEY": KEY_B, "INNGEST_SIGNING_KEY_FALLBACK": KEY_A,
        "INNGEST_ALLOW_IN_BAND_SYNC": "false",
        "INNGEST_SERVE_ORIGIN": f"http://127.0.0.1:{origin_port}"})
    origin_app.port = origin_port
    origin_app.args[origin_app.args.index("--port") + 1] = str(origin_port)
    hostile = Proc("hostile-app", [sys.executable, "-m", "uvicorn",
                                   "tests.apps.hostile_app:app", "--host", "127.0.0.1",
                                   "--port", str(hostile_port), "--log-level", "warning"],
                   directory)
    hostile_origin = f"http://127.0.0.1:{hostile_port}"
    executor = Executor(directory, redis.url, [in_band_app.url, f"{hostile_origin}/inband-forged"],
                        port=exec_port, extra=["--signing-key", KEY_A, "--event-key", EVENT_KEY])
    executor.args[executor.args.index("dev")] = "start"
    procs: list[Proc] = [in_band_app, origin_app, hostile, executor]
    try:
        for proc in procs:
            proc.start()
        wait_for(lambda: httpx.get(f"{hostile_origin}/seen", timeout=1).status_code == 200, 30,
                 "the hostile app")
        yield Setup(executor, in_band_app, origin_app, hostile_origin)
    finally:
        for proc in reversed(procs):
            proc.stop()
        redis.stop()
        _keep_logs(directory)


def test_the_executor_syncs_production_apps_in_band(setup: Setup) -> None:
    # the app cannot reach the executor's /fn/register, so only an in-band sync works
    wait_for(lambda: "durable" in setup.apps(), 30, "the in-band sync")
    app = setup.apps()["durable"]
    assert app["url"] == setup.in_band_app.url and not app["error"]
    functions = {f["id"]: f for f in setup.get("/v1/functions")}
    assert "durable-ten-steps" in functions
    sent = httpx.post(f"{setup.executor.url}/e/{EVENT_KEY}", json={"name": "test/ten-steps"},
                      timeout=10)
    event_id = sent.json()["ids"][0]

    def done() -> Any:
        runs = setup.get(f"/v1/events/{event_id}/runs")
        return runs and runs[0]["status"] == "Completed"

    wait_for(done, 30, "a run of the in-band synced app")


def test_a_forged_host_cannot_move_the_app(setup: Setup) -> None:
    wait_for(lambda: "durable" in setup.apps(), 30, "the in-band sync")
    for headers in ({"Host": "evil.example"},
                    {"Host": "evil.example", "X-Inngest-Sync-Kind": "in_band"}):
        answer = httpx.put(setup.in_band_app.url, headers=headers, timeout=30)
        assert answer.status_code in (400, 401), answer.text
        assert answer.json()["code"] in ("serve_origin_required", "sig_verification_failed")
    assert setup.apps()["durable"]["url"] == setup.in_band_app.url
    # the same PUT signed by somebody else's key: no better
    body = b'{"url": "http://evil.example/api/inngest"}'
    forged = signing.sign(body, "signkey-prod-" + secrets.token_hex(32))
    answer = httpx.put(setup.in_band_app.url, content=body, timeout=30, headers={
        "Host": "evil.example", "X-Inngest-Signature": forged,
        "X-Inngest-Sync-Kind": "in_band", "Content-Type": "application/json"})
    assert answer.status_code == 401, answer.text
    assert setup.apps()["durable"]["url"] == setup.in_band_app.url


def test_serve_origin_wins_over_host_and_the_fallback_key_is_tried(setup: Setup) -> None:
    # the app signs its API calls with KEY_B, which the executor does not know yet: its
    # register is refused (401) and made again with the fallback, KEY_A
    answer = httpx.put(setup.origin_app.url, headers={"Host": "evil.example"}, timeout=30)
    assert answer.status_code == 200, answer.text
    app = setup.apps()["primitives"]
    assert app["url"] == f"http://127.0.0.1:{setup.origin_app.port}/api/inngest"
    assert "evil" not in str(setup.get("/v1/functions"))


def test_an_in_band_answer_signed_with_another_key_is_refused(setup: Setup) -> None:
    wait_for(lambda: "/inband-forged" in httpx.get(f"{setup.hostile_origin}/seen",
                                                   timeout=5).json(), 30, "a sync attempt")
    assert "forged" not in setup.apps()
    assert not any(f["id"] == "forged-all" for f in setup.get("/v1/functions"))
    wait_for(lambda: "in-band sync answer refused: the signature does not match"
             in setup.executor.log(), 30, "the refusal in the executor's log")
