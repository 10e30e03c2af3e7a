"""An app that answers like a broken SDK fails its runs with a readable error, after its
retries, and never takes the executor down. Real processes: redis-server, the executor and a
raw FastAPI app (tests/apps/bad_sdk.py, no SDK) registered by a hand-written /fn/register."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from executor.worker import MAX_IDLE_CALLS

from ..conftest import _keep_logs
from ..procs import App, Executor, RedisServer, free_port, wait_for

pytestmark = pytest.mark.real

RETRIES = 1  # so each run makes exactly 2 attempts

# fn id -> (event name, words the failed run's error must contain)
BAD = {
    "bad-not-json": ("bad/not-json", ["200", "not JSON"]),
    "bad-unknown-op": ("bad/unknown-op", ["unknown op", "TeleportStep"]),
    "bad-no-header": ("bad/no-header", ["X-Inngest-SDK", "not an Inngest SDK"]),
    "bad-html-502": ("bad/html-502", ["invalid status code: 502", "Bad Gateway"]),
    "bad-empty-ops": ("bad/empty-ops", ["206 with no opcodes"]),
    "bad-hang": ("bad/hang", ["timed out"]),  # the executor runs with --call-timeout 1
    "bad-group-invoke": ("bad/group-invoke", ["InvokeFunction", "opts.payload"]),
    "bad-ai-url": ("bad/ai-url", ["AIGateway", "opts.url", "http(s)"]),
}


def function(app_url: str, fn_id: str, event: str) -> dict[str, Any]:
    return {
        "id": fn_id,
        "name": fn_id,
        "triggers": [{"event": event}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": f"{app_url}?fnId={fn_id}&stepId=step"},
                "retries": {"attempts": RETRIES},
            }
        },
    }


class Bad:
    def __init__(self, executor: Executor, app: App) -> None:
        self.executor = executor
        self.app = app

    def calls(self) -> dict[str, int]:
        answer = httpx.get(self.app.url.replace("/api/inngest", "/calls"), timeout=5)
        return dict(answer.json())


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bad]:
    directory: pathlib.Path = tmp_path_factory.mktemp("bad-sdk")
    redis = RedisServer(directory)
    exec_port = free_port()
    executor = Executor(directory, redis.url, [], port=exec_port,
                        extra=["--call-timeout", "1"])
    app = App(directory, "tests.apps.bad_sdk:app", executor.url)
    try:
        redis.start()
        executor.start()
        app.start()
        functions = [function(app.url, fn_id, event) for fn_id, (event, _) in BAD.items()]
        functions.append(function(app.url, "bad-good", "bad/good"))
        functions.append(function(app.url, "bad-discovery-loop", "bad/discovery-loop"))
        body = {"appName": "bad", "url": app.url, "sdk": "raw:v0", "v": "0.1",
                "framework": "fast_api", "functions": functions}
        answer = httpx.post(f"{executor.url}/fn/register", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        executor.wait_synced(*BAD, "bad-good", timeout=10)
        yield Bad(executor, app)
    finally:
        for proc in (app, executor, redis):
            proc.stop()
        _keep_logs(directory)


@pytest.mark.parametrize("fn_id", list(BAD))
def test_malformed_answer_fails_the_run_readably(bad: Bad, fn_id: str) -> None:
    event, words = BAD[fn_id]
    event_id = bad.executor.send(event, {"n": 1})
    run = bad.executor.wait_run(event_id, "Failed", timeout=15)
    assert run["function_id"] == fn_id
    output = run["output"]
    assert isinstance(output, dict), output
    message = str(output.get("message"))
    for word in words:
        assert word in message, output
    assert output.get("name") == "Error"
    assert run["ended_at"] is not None
    # it was retried before failing: retries + 1 calls, not one and not endless
    wait_for(lambda: bad.calls().get(fn_id) == RETRIES + 1, 5, f"{fn_id} to be called twice")
    assert bad.calls()[fn_id] == RETRIES + 1


def test_an_sdk_that_only_asks_for_discovery_fails_the_run(bad: Bad) -> None:
    event_id = bad.executor.send("bad/discovery-loop", {})
    run = bad.executor.wait_run(event_id, "Failed", timeout=15)
    assert "no progress" in run["output"]["message"]
    assert bad.calls()["bad-discovery-loop"] == MAX_IDLE_CALLS + 1  # capped, not endless


def test_executor_still_serves_after_the_bad_answers(bad: Bad) -> None:
    # all the bad runs at once, then a good one: the executor keeps working
    sent = [bad.executor.send(event, {"round": 2}) for event, _ in BAD.values()]
    for event_id in sent:
        bad.executor.wait_run(event_id, "Failed", timeout=15)
    health = httpx.get(f"{bad.executor.url}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == 200
    good = bad.executor.send("bad/good", {"hello": "world"})
    run = bad.executor.wait_run(good, "Completed", timeout=15)
    assert run["function_id"] == "bad-good"
    assert run["output"] == {"ok": True, "echo": {"hello": "world"}, "attempt": 0}
    assert bad.executor.process is not None and bad.executor.process.poll() is None
    log = bad.executor.log()
    assert "worker task failed" not in log
    assert "Traceback" not in log
