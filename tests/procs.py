"""Real processes for tests: redis-server, executor (`python -m executor`), uvicorn apps.

Every helper waits on a condition with a deadline, never on a bare sleep, and every process
can be killed with SIGKILL to prove crash claims.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing checked may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, args: list[str], log_dir: pathlib.Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
                start_new_session=True,
            )

    def kill9(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.kill9()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer(Proc):
    def __init__(self, log_dir: pathlib.Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = log_dir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            f"redis-{self.port}",
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--dir", str(self.dir), "--appendonly", "yes",
             "--appendfsync", "always", "--save", ""],
            log_dir,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        super().start()
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: client.ping(), 15, "redis-server to answer PING")

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port)


class Executor(Proc):
    def __init__(self, log_dir: pathlib.Path, redis_url: str, app_urls: list[str],
                 *, port: int | None = None, extra: list[str] | None = None,
                 name: str | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        args = [sys.executable, "-m", "executor", "dev", "--port", str(self.port),
                "--redis-url", redis_url, "--retry-interval", "0.2", "--lease-seconds", "2",
                "--poll-interval", "1", *(extra or [])]
        for url in app_urls:
            args += ["-u", url]
        super().__init__(name or f"executor-{self.port}", args, log_dir, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        wait_for(lambda: httpx.get(f"{self.url}/health", timeout=1).status_code == 200, 30,
                 f"{self.name} /health")

    # -- API helpers ----------------------------------------------------------------------
    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        body = {"name": name, "data": data or {}, **fields}
        answer = httpx.post(f"{self.url}/e/test-key", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["ids"][0])

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/v1/events/{event_id}/runs", timeout=10)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    def run(self, run_id: str) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/v1/runs/{run_id}", timeout=10)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["data"])

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/v1/runs/{run_id}/steps", timeout=10)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    def wait_run(self, event_id: str, status: str | tuple[str, ...] = "Completed",
                 timeout: float = 30, fn_suffix: str = "") -> dict[str, Any]:
        """The (single, or function-suffixed) run of `event_id`, once it reached `status`."""
        wanted = (status,) if isinstance(status, str) else status

        def check() -> dict[str, Any] | None:
            runs = [r for r in self.runs_of(event_id) if r["function_id"].endswith(fn_suffix)]
            if runs and runs[0]["status"] in wanted:
                return runs[0]
            return None

        return wait_for(check, timeout, f"a run of event {event_id} to be {wanted}")

    def wait_sleeping(self, event_id: str, step: str = "nap") -> dict[str, Any]:
        """The run of `event_id` once it sleeps in `step`."""
        run = self.wait_run(event_id, "Running", timeout=10)
        wait_for(lambda: any(s["name"] == step and s["status"] == "Sleeping"
                             for s in self.steps(run["run_id"])), 10, "the run to sleep")
        return run

    def functions(self) -> list[str]:
        answer = httpx.get(f"{self.url}/v1/functions", timeout=10)
        assert answer.status_code == 200, answer.text
        return [fn["id"] for fn in answer.json()["data"]]

    def wait_synced(self, *fn_ids: str, timeout: float = 30) -> None:
        wait_for(lambda: set(fn_ids) <= set(self.functions()), timeout,
                 f"functions {fn_ids} to be synced")


class App(Proc):
    def __init__(self, log_dir: pathlib.Path, target: str, executor_url: str,
                 *, port: int | None = None, env: dict[str, str] | None = None,
                 name: str | None = None) -> None:
        self.port = port or free_port()
        super().__init__(
            name or f"app-{self.port}",
            [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            log_dir,
            {"INNGEST_DEV": "1", "INNGEST_BASE_URL": executor_url, **(env or {})},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/inngest"

    def start(self) -> None:
        super().start()
        wait_for(lambda: httpx.get(self.url, timeout=1).status_code == 200, 30,
                 f"{self.name} to serve {self.url}")
