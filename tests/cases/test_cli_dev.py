"""`inngest-like dev` with the embedded default, `start` without Redis, and app self-sync."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import httpx
import pytest

from ..procs import App, Executor, Proc, RedisServer, free_port, wait_for

pytestmark = pytest.mark.real


def _dev(tmp_path: pathlib.Path, port: int, name: str, env: dict[str, str] | None = None) -> Proc:
    proc = Proc(name, [sys.executable, "-m", "executor", "dev", "--port", str(port),
                       "--data-dir", str(tmp_path / "data")], tmp_path, env)
    proc.start()
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200,
             30, f"{name} to serve")
    return proc


def test_embedded_redis_server_keeps_state_across_restarts(tmp_path: pathlib.Path) -> None:
    port = free_port()
    first = _dev(tmp_path, port, "dev-1")
    try:
        assert "embedded redis-server (AOF)" in first.log()
        sent = httpx.post(f"http://127.0.0.1:{port}/e/k", json={"name": "a/b", "data": {"x": 1}})
        event_id = sent.json()["ids"][0]
    finally:
        first.stop()  # SIGTERM: the executor stops its redis-server child cleanly
    assert (tmp_path / "data" / "redis").is_dir()
    second = _dev(tmp_path, port, "dev-2")
    try:
        found = httpx.get(f"http://127.0.0.1:{port}/v1/events/{event_id}", timeout=5)
        assert found.status_code == 200
        assert found.json()["data"]["data"] == {"x": 1}
    finally:
        second.stop()


def test_in_memory_fallback_says_state_is_not_durable(tmp_path: pathlib.Path) -> None:
    port = free_port()
    proc = _dev(tmp_path, port, "dev-mem", {"INNGEST_LIKE_NO_REDIS_SERVER": "1"})
    try:
        assert "will NOT survive a restart" in proc.log()
        sent = httpx.post(f"http://127.0.0.1:{port}/e/k", json={"name": "a/b"}, timeout=5)
        assert sent.status_code == 200
    finally:
        proc.stop()


def test_start_requires_redis_url() -> None:
    done = subprocess.run([sys.executable, "-m", "executor", "start"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "--redis-url is required" in done.stderr


def test_app_syncs_itself_on_put(tmp_path: pathlib.Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    executor = Executor(tmp_path, redis.url, [])
    executor.start()
    app = App(tmp_path, "tests.apps.durable_app:app", executor.url)
    app.start()
    try:
        assert executor.functions() == []
        answer = httpx.put(app.url, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-inngest-sync-kind"] == "out_of_band"
        assert "durable-ten-steps" in executor.functions()
        apps = httpx.get(f"{executor.url}/v1/apps", timeout=5).json()["data"]
        assert apps[0]["id"] == "durable" and apps[0]["url"] == app.url
    finally:
        app.stop()
        executor.stop()
        redis.stop()
