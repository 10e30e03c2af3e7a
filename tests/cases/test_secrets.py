"""Issue 10.2 and 10.7 (secrets): signing keys are validated when the executor starts, the
empty Bearer token that used to pass every production check is refused, and every secret
can come from a file or an environment variable instead of the command line (where `ps`
shows it to every user of the machine). Real processes."""

from __future__ import annotations

import pathlib
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import psutil
import pytest

from inngest_like import signing

from ..conftest import executor_alone
from ..procs import ROOT, Executor

pytestmark = pytest.mark.real

KEY = "signkey-prod-" + secrets.token_hex(32)
FALLBACK = "signkey-prod-" + secrets.token_hex(32)
EVENT_KEY = "ek-" + secrets.token_hex(16)
PASSWORD = "pw-" + secrets.token_hex(8)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m executor start ...` expecting it to refuse before serving."""
    return subprocess.run([sys.executable, "-m", "executor", "start", "--redis-url",
                           "redis://127.0.0.1:9/0", "--port", "9", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**dict(__import__("os").environ), **(env or {})})


@pytest.mark.parametrize(("args", "env", "words"), [
    (["--signing-key", "signkey-prod-my-long-password"], {}, "--signing-key: the signing key "
     "must look like signkey-<env>-<hex>"),
    ([], {"INNGEST_SIGNING_KEY": "signkey-prod-abc123"}, "at least 32"),
    (["--signing-key", KEY, "--signing-key-fallback", "signkey-prod-"], {},
     "--signing-key-fallback: the signing key has 0 hex characters"),
    (["--signing-key-file", "/nonexistent/key"], {}, "--signing-key-file: cannot read"),
])
def test_malformed_keys_stop_the_executor_at_start(args: list[str], env: dict[str, str],
                                                   words: str) -> None:
    done = start_cli(*args, env={"INNGEST_SIGNING_KEY": "", **env})
    assert done.returncode == 2, done.stderr
    assert words in done.stderr, done.stderr
    assert "my-long-password" not in done.stderr and "abc123" not in done.stderr


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    """`start` with every secret from a file or the environment, none on the command line."""
    directory: pathlib.Path = tmp_path_factory.mktemp("secrets")
    (directory / "signing.key").write_text(KEY + "\n")
    (directory / "event.keys").write_text(f"{EVENT_KEY}\n")
    (directory / "password").write_text(PASSWORD)
    with executor_alone(directory, [
            "--signing-key-file", str(directory / "signing.key"),
            "--event-key-file", str(directory / "event.keys")], production=True, env={
            "INNGEST_SIGNING_KEY_FALLBACK": FALLBACK,
            "INNGEST_LIKE_DASHBOARD_PASSWORD_FILE": str(directory / "password")}) as executor:
        yield executor


def test_no_secret_on_the_command_line(production: Executor) -> None:
    assert production.process is not None
    command_line = " ".join(psutil.Process(production.process.pid).cmdline())
    for secret in (KEY, signing.strip_prefix(KEY), FALLBACK, EVENT_KEY, PASSWORD):
        assert secret not in command_line


def test_secrets_from_files_and_environment_work(production: Executor) -> None:
    url = production.url
    for key in (KEY, FALLBACK):  # the file's key, and the variable's fallback
        answer = httpx.get(f"{url}/v1/functions", timeout=10,
                           headers={"Authorization": f"Bearer {signing.bearer(key)}"})
        assert answer.status_code == 200, answer.text
    sent = httpx.post(f"{url}/e/{EVENT_KEY}", json={"name": "test/x"}, timeout=10)
    assert sent.status_code == 200, sent.text
    with httpx.Client(base_url=url, timeout=10) as http:
        login_page = http.get("/login")
        token = login_page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        login = http.post("/login", data={"password": PASSWORD, "csrf": token, "next": "/"})
        assert login.status_code == 303, login.text
        assert http.get("/").status_code == 200


@pytest.mark.parametrize("authorization", [
    "Bearer signkey-prod-", "Bearer", "Bearer signkey-prod-%20", "bearer signkey-test-",
    f"Bearer {'0' * 64}", "Bearer signkey-prod-zz"])
def test_empty_and_malformed_bearer_tokens_are_refused(production: Executor,
                                                       authorization: str) -> None:
    for method, path in (("GET", "/v1/functions"), ("GET", "/v0/runs/x/actions"),
                         ("POST", "/fn/register")):
        answer = httpx.request(method, f"{production.url}{path}", timeout=10,
                               headers={"Authorization": authorization,
                                        "Content-Type": "application/json"},
                               content=b'{"appName": "evil", "url": "http://x", "functions": []}'
                               if method == "POST" else None)
        assert answer.status_code == 401, (authorization, path, answer.text)
