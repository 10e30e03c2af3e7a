"""The embedded default for `dev` without `--redis-url`: a child redis-server with AOF in a
local data folder when one is installed, otherwise an in-process in-memory Redis."""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time

from redis import Redis as SyncRedis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisChild:
    """A redis-server child process with append-only persistence in `data_dir`."""

    def __init__(self, data_dir: pathlib.Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir.resolve()),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        client = SyncRedis(port=self.port, socket_connect_timeout=0.2)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            try:
                if client.ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer PING in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def has_redis_server() -> bool:
    return shutil.which("redis-server") is not None and os.environ.get("INNGEST_LIKE_NO_REDIS_SERVER") is None
