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


def free_cluster_port() -> int:
    """A free port for a cluster node: Redis puts the node's cluster bus on port + 10000, so
    the port must be at most 55535 and port + 10000 free too."""
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            port = 20000 + port % 30000
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


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


class RedisCluster:
    """A Redis Cluster on loopback: three masters with one replica each (`redis-server
    --cluster-enabled yes` + `redis-cli --cluster create`). Its `url` names one node; the
    executor finds the rest. A short node timeout makes a failover take about 2 s."""

    def __init__(self, log_dir: pathlib.Path, masters: int = 3) -> None:
        self.nodes = [RedisServer(log_dir, free_cluster_port()) for _ in range(masters * 2)]
        for node in self.nodes:
            node.args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "1000",
                          # a replica takes over whatever the age of its last contact
                          "--cluster-replica-validity-factor", "0"]

    @property
    def url(self) -> str:
        return next(n for n in self.nodes if n.process and n.process.poll() is None).url

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-replicas", "1",
             "--cluster-yes"], capture_output=True, timeout=60, check=False)
        assert created.returncode == 0, created.stdout.decode() + created.stderr.decode()
        self.wait_ok()

        def synced() -> bool:  # a replica that never synced cannot take over
            roles = [n.client().info("replication") for n in self.nodes]
            return all(r.get("master_link_status") == "up" for r in roles
                       if r["role"] == "slave") and sum(r["role"] == "slave" for r in roles) \
                == len(self.nodes) // 2
        wait_for(synced, 30, "every replica to sync with its master")

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says the cluster is ok and agrees on the masters."""
        def ok() -> bool:
            live = [n for n in self.nodes if n.process and n.process.poll() is None]
            return all(n.client().cluster("info")["cluster_state"] == "ok" for n in live) \
                and len({self.master_port(n, 0) for n in live}) == 1
        wait_for(ok, timeout, "the Redis Cluster to be ok")

    @staticmethod
    def master_port(node: RedisServer, slot: int) -> int:
        """The port of the master serving `slot`, as `node` sees it."""
        for start, end, master, *_ in node.client().cluster("slots"):
            if start <= slot <= end:
                return int(master[1])
        return -1

    def master_of(self, key: str) -> RedisServer:
        node = next(n for n in self.nodes if n.process and n.process.poll() is None)
        slot = int(node.client().cluster("keyslot", key))
        port = self.master_port(node, slot)
        return next(n for n in self.nodes if n.port == port)

    def kill_master_of(self, key: str, timeout: float = 30) -> RedisServer:
        """`kill -9` the master serving `key`; returns once its replica serves the slot (as
        every live node sees it). Returns the killed node (`start` brings it back)."""
        master = self.master_of(key)
        live = next(n for n in self.nodes if n is not master)
        slot = int(live.client().cluster("keyslot", key))
        master.kill9()

        def promoted() -> bool:
            nodes = [n for n in self.nodes if n.process and n.process.poll() is None]
            ports = {self.master_port(n, slot) for n in nodes}
            return len(ports) == 1 and master.port not in ports and all(
                n.client().cluster("info")["cluster_state"] == "ok" for n in nodes)
        wait_for(promoted, timeout, "a replica to take over the killed master's slots")
        return master

    def client(self) -> Any:
        import redis

        node = next(n for n in self.nodes if n.process and n.process.poll() is None)
        return redis.RedisCluster(host="127.0.0.1", port=node.port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


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
