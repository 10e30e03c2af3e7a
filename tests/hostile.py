"""A real executor (dev mode, real redis-server) facing `tests/apps/hostile_app.py`: tests
register functions whose URLs point at the hostile routes, then check that the executor
fails those runs with a readable error and keeps serving."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from .conftest import _keep_logs
from .procs import Executor, Proc, RedisServer, free_port, wait_for


@dataclasses.dataclass
class HostileStack:
    redis: RedisServer
    executor: Executor
    app: Proc
    app_origin: str

    def register(self, fn_id: str, path: str, event: str, retries: int = 0,
                 **config: Any) -> None:
        url = f"{self.app_origin}{path}{'&' if '?' in path else '?'}fnId={fn_id}&stepId=step"
        body = {"appName": f"hostile-{fn_id}", "url": f"{self.app_origin}{path}",
                "functions": [{"id": fn_id, "name": fn_id, "triggers": [{"event": event}],
                               "steps": {"step": {"id": "step", "name": "step", "runtime": {
                                   "type": "http", "url": url},
                                   "retries": {"attempts": retries}}}, **config}]}
        answer = httpx.post(f"{self.executor.url}/fn/register", json=body, timeout=10)
        assert answer.status_code == 200, answer.text

    def seen(self) -> list[str]:
        return list(httpx.get(f"{self.app_origin}/seen", timeout=5).json())

    def alive(self) -> bool:
        """The executor process still runs and answers."""
        process = self.executor.process
        assert process is not None
        return process.poll() is None and httpx.get(
            f"{self.executor.url}/health", timeout=5).status_code == 200


@contextlib.contextmanager
def hostile_stack(directory: pathlib.Path, executor_extra: list[str] | None = None
                  ) -> Iterator[HostileStack]:
    redis = RedisServer(directory)
    redis.start()
    port = free_port()
    app = Proc("hostile-app", [sys.executable, "-m", "uvicorn", "tests.apps.hostile_app:app",
                               "--host", "127.0.0.1", "--port", str(port),
                               "--log-level", "warning"], directory)
    executor = Executor(directory, redis.url, [], extra=executor_extra)
    origin = f"http://127.0.0.1:{port}"
    try:
        app.start()
        wait_for(lambda: httpx.get(f"{origin}/seen", timeout=1).status_code == 200, 30,
                 "the hostile app")
        executor.start()
        yield HostileStack(redis, executor, app, origin)
    finally:
        for proc in (app, executor, redis):
            proc.stop()
        _keep_logs(directory)
