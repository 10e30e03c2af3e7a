"""What both compat suites share: a stack of redis-server, our executor and an app process
that is not ours (a venv's uvicorn, or node), plus reads of the executor's /v1 API."""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..conftest import OUTPUT, _keep_logs
from ..procs import Executor, Proc, RedisServer, free_port, wait_for

COMPAT_OUTPUT = OUTPUT / "compat"


@dataclasses.dataclass
class CompatStack:
    app_id: str
    redis: RedisServer
    executor: Executor
    app: Proc
    app_url: str
    counter: pathlib.Path
    dir: pathlib.Path

    def fid(self, fn: str) -> str:
        """The composite id (`<app id>-<fn id>`) the executor knows function `fn` by."""
        return f"{self.app_id}-{fn}"

    def counts(self) -> dict[tuple[str, str], int]:
        """How often each (run id, what) body ran, from the app's counter file."""
        out: dict[tuple[str, str], int] = {}
        for run_id, what, _ in self.lines():
            out[(run_id, what)] = out.get((run_id, what), 0) + 1
        return out

    def lines(self) -> list[tuple[str, str, float]]:
        if not self.counter.exists():
            return []
        rows = []
        for line in self.counter.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) == 3:
                rows.append((parts[0], parts[1], float(parts[2])))
        return rows

    def calls(self, run_id: str) -> list[str]:
        """What the app noted of each call request of `run_id`, in order:
        `use_api=<top level>/<ctx>:fn_id=<set|unset>`."""
        return [what.removeprefix("call:") for rid, what, _ in self.lines()
                if rid == run_id and what.startswith("call:")]

    def times(self, run_id: str, what: str) -> list[float]:
        return [at for rid, w, at in self.lines() if rid == run_id and w == what]

    def stop(self) -> None:
        for proc in (self.app, self.executor, self.redis):
            proc.stop()
        _keep_logs(self.dir)


def start_compat_stack(app_id: str, directory: pathlib.Path,
                       make_app: Callable[[int, dict[str, str]], Proc], *,
                       production: bool = False, app_path: str = "/api/inngest") -> CompatStack:
    """redis-server, then our executor syncing `http://127.0.0.1:<port><app_path>`, then the app
    made by `make_app(port, env)`, which must serve that URL with `env` added to its own.

    Dev mode: `executor dev` and INNGEST_DEV=1. Production: `executor start` with a signing key
    and an event key, the app in cloud mode with the same keys (signed calls, Bearer API)."""
    redis = RedisServer(directory)
    redis.start()
    exec_port, app_port = free_port(), free_port()
    counter = directory / "counter.txt"
    app_url = f"http://127.0.0.1:{app_port}{app_path}"
    env = {"INNGEST_BASE_URL": f"http://127.0.0.1:{exec_port}", "COUNTER_FILE": str(counter)}
    executor: Executor
    if production:
        signing_key = "signkey-test-" + secrets.token_hex(32)
        event_key = "ek-" + secrets.token_hex(16)
        executor = ProdExecutor(directory, redis.url, [app_url], port=exec_port,
                                signing_key=signing_key, event_key=event_key)
        env.update({"INNGEST_DEV": "0", "INNGEST_SIGNING_KEY": signing_key,
                    "INNGEST_EVENT_KEY": event_key})
    else:
        executor = Executor(directory, redis.url, [app_url], port=exec_port)
        env["INNGEST_DEV"] = "1"
    app = make_app(app_port, env)
    stack = CompatStack(app_id, redis, executor, app, app_url, counter, directory)
    try:
        executor.start()
        app.start()
        # in cloud mode the JS SDK answers an unsigned GET with 401 {"message":"Unauthorized"}
        wait_for(lambda: httpx.get(app_url, timeout=2).status_code in (200, 401), 60,
                 f"{app.name} to serve {app_url} (log: {app.log_path})")
    except BaseException:
        stack.stop()
        raise
    return stack


class ProdExecutor(Executor):
    """`executor start` with a signing key and an event key: events go to /e/<event key>, the
    /v1 reads carry `Authorization: Bearer <sha256 of the key>`."""

    def __init__(self, log_dir: pathlib.Path, redis_url: str, app_urls: list[str], *, port: int,
                 signing_key: str, event_key: str) -> None:
        super().__init__(log_dir, redis_url, app_urls, port=port,
                         extra=["--signing-key", signing_key, "--event-key", event_key,
                                "--dashboard-password", secrets.token_hex(8)])
        self.args[self.args.index("dev")] = "start"
        self.event_key = event_key
        hashed = hashlib.sha256(bytes.fromhex(signing_key.split("-", 2)[2])).hexdigest()
        self.headers = {"Authorization": f"Bearer {hashed}"}

    def _get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", headers=self.headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    def send(self, name: str, data: dict[str, Any] | None = None, **fields: Any) -> str:
        body = {"name": name, "data": data or {}, **fields}
        answer = httpx.post(f"{self.url}/e/{self.event_key}", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["ids"][0])

    def runs_of(self, event_id: str) -> list[dict[str, Any]]:
        return list(self._get(f"/v1/events/{event_id}/runs"))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self._get(f"/v1/runs/{run_id}"))

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return list(self._get(f"/v1/runs/{run_id}/steps"))

    def functions(self) -> list[str]:
        return [fn["id"] for fn in self._get("/v1/functions")]


TERMINAL = ("Completed", "Failed", "Cancelled")


class Ended(BaseException):
    """A run reached a final status other than the one waited for. A BaseException, so that
    `wait_for` (which retries on Exception) stops at once."""


# -- /v1 reads ------------------------------------------------------------------------------
def events_named(ex: Executor, name: str, limit: int = 200) -> list[dict[str, Any]]:
    answer = httpx.get(f"{ex.url}/v1/events", params={"name": name, "limit": limit},
                       headers=getattr(ex, "headers", {}), timeout=10)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["data"])


def run_of(ex: Executor, event_id: str, fn_id: str, status: str | tuple[str, ...],
           timeout: float = 30) -> dict[str, Any]:
    """The run of function `fn_id` (composite id) started by `event_id`, once in `status`."""
    wanted = (status,) if isinstance(status, str) else status
    seen: list[dict[str, Any]] = []

    def check() -> dict[str, Any] | None:
        runs = [r for r in ex.runs_of(event_id) if r["function_id"] == fn_id]
        seen[:] = runs
        if runs and runs[0]["status"] in TERMINAL and runs[0]["status"] not in wanted:
            raise Ended(f"the run of {fn_id} for event {event_id} ended {runs[0]['status']}, "
                        f"not {wanted}: {runs[0]}")
        return runs[0] if runs and runs[0]["status"] in wanted else None

    try:
        return wait_for(check, timeout, f"a run of {fn_id} for event {event_id} to be {wanted}")
    except Ended as ended:
        raise AssertionError(str(ended)) from None
    except AssertionError as exc:
        raise AssertionError(f"{exc}; runs seen: {seen}") from None


def step_named(ex: Executor, run_id: str, name: str) -> dict[str, Any] | None:
    return next((s for s in ex.steps(run_id) if s.get("name") == name), None)


def wait_step(ex: Executor, run_id: str, name: str, status: str,
              timeout: float = 20) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        step = step_named(ex, run_id, name)
        return step if step and step.get("status") == status else None

    return wait_for(check, timeout, f"step {name!r} of run {run_id} to be {status}")


def failed_event_of(ex: Executor, run_id: str, timeout: float = 20) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = [e for e in events_named(ex, "inngest/function.failed")
                 if (e.get("data") or {}).get("run_id") == run_id]
        return found[0] if found else None

    return wait_for(check, timeout, f"inngest/function.failed for run {run_id}")


def stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Fail if `check` turns false within `seconds` (polled, never slept through)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.05)
