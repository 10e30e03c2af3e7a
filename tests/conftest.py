"""Fixtures that start real processes: redis-server, the executor, uvicorn apps."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from executor import keys
from executor.scripts import STRICT_ENV

from .procs import App, Executor, RedisCluster, RedisServer, free_port

OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "test-output"

# every script, in this process and in the executors the tests start (they inherit the
# environment), runs behind the guard that fails a command naming a key not in KEYS
os.environ.setdefault(STRICT_ENV, "1")


def pytest_configure(config: pytest.Config) -> None:
    OUTPUT.mkdir(exist_ok=True)


@pytest.fixture
def log_dir(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path


@pytest.fixture(autouse=True)
def _require_redis_for_real(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("real") and not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")


# the Redis a stack runs on: "single" (one redis-server, a store of one shard) or "cluster"
# (RedisCluster: three masters with a replica each, the store cut into CLUSTER_SHARDS
# shards, one per master); suites that must hold on both parametrise their fixture with
# REDIS_KINDS
REDIS_KINDS = ["single", "cluster"]
CLUSTER_SHARDS = 3


@dataclasses.dataclass
class Stack:
    redis: RedisServer | RedisCluster
    executor: Executor
    app: App
    counter: pathlib.Path
    dir: pathlib.Path
    shards: int = 1

    @contextlib.contextmanager
    def keyed(self) -> Iterator[None]:
        """Build keys (executor.keys) for this stack's store while inside."""
        keys.configure(self.shards)
        try:
            yield
        finally:
            keys.configure(1)

    def counts(self) -> dict[tuple[str, str], int]:
        """How often each (run id, step) body ran, from the app's counter file."""
        out: dict[tuple[str, str], int] = {}
        if not self.counter.exists():
            return out
        for line in self.counter.read_text().splitlines():
            run_id, what, _ = line.split(" ")
            out[(run_id, what)] = out.get((run_id, what), 0) + 1
        return out

    def lines(self) -> list[tuple[str, str, float]]:
        if not self.counter.exists():
            return []
        rows = []
        for line in self.counter.read_text().splitlines():
            run_id, what, at = line.split(" ")
            rows.append((run_id, what, float(at)))
        return rows

    def stop(self) -> None:
        for proc in (self.app, self.executor, self.redis):
            proc.stop()


def start_stack(directory: pathlib.Path, target: str = "tests.apps.durable_app:app",
                app_env: dict[str, str] | None = None,
                executor_extra: list[str] | None = None,
                executor_env: dict[str, str] | None = None,
                redis_kind: str = "single") -> Stack:
    redis: RedisServer | RedisCluster = (
        RedisCluster(directory) if redis_kind == "cluster" else RedisServer(directory))
    redis.start()
    exec_port, app_port = free_port(), free_port()
    counter = directory / "counter.txt"
    app = App(directory, target, f"http://127.0.0.1:{exec_port}", port=app_port,
              env={"COUNTER_FILE": str(counter), **(app_env or {})})
    if redis_kind == "cluster":
        executor_extra = ["--queue-shards", str(CLUSTER_SHARDS), *(executor_extra or [])]
    executor = Executor(directory, redis.url, [app.url], port=exec_port, extra=executor_extra,
                        env=executor_env)
    try:
        executor.start()
        app.start()
    except BaseException:
        for proc in (app, executor, redis):  # leave no orphan behind a failed start
            proc.stop()
        raise
    return Stack(redis, executor, app, counter, directory,
                 shards=CLUSTER_SHARDS if redis_kind == "cluster" else 1)


@contextlib.contextmanager
def app_stack(factory: pytest.TempPathFactory, name: str, target: str,
              *fn_ids: str, redis_kind: str = "single") -> Iterator[Stack]:
    """A stack serving `target`, once `fn_ids` are synced; stopped and its logs kept after."""
    directory = factory.mktemp(f"{name}-{redis_kind}")
    stack = start_stack(directory, target, redis_kind=redis_kind)
    try:
        stack.executor.wait_synced(*fn_ids)
        yield stack
    finally:
        stack.stop()
        _keep_logs(directory)


@contextlib.contextmanager
def executor_alone(directory: pathlib.Path, extra: list[str] | None = None, *,
                   production: bool = False, env: dict[str, str] | None = None,
                   ) -> Iterator[Executor]:
    """A redis-server and an executor with no app (`start` when `production`), stopped and
    their logs kept after."""
    redis = RedisServer(directory)
    redis.start()
    executor = Executor(directory, redis.url, [], port=free_port(), extra=extra)
    if production:
        executor.args[executor.args.index("dev")] = "start"
    executor.env.update(env or {})
    try:
        executor.start()
        yield executor
    finally:
        executor.stop()
        redis.stop()
        _keep_logs(directory)


@pytest.fixture
def stack(tmp_path: pathlib.Path) -> Iterator[Stack]:
    s = start_stack(tmp_path)
    try:
        yield s
    finally:
        s.stop()
        _keep_logs(tmp_path)


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("stack")
    s = start_stack(directory)
    try:
        yield s
    finally:
        s.stop()
        _keep_logs(directory)


def _keep_logs(directory: pathlib.Path) -> None:
    """Copy process logs under test-output/ so CI failures can be read."""
    target = OUTPUT / "logs" / directory.name
    target.mkdir(parents=True, exist_ok=True)
    for log in directory.glob("*.log"):
        shutil.copy(log, target / log.name)


__all__ = ["Stack", "executor_alone", "start_stack", "subprocess"]
