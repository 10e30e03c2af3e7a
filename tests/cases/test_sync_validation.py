"""A sync (`POST /fn/register`) with a bad CEL expression, cron string, cancel `if` or
timeout is refused as a whole with a 400 naming the function and the field, and registers
nothing. Real processes: redis-server and the executor, with hand-written sync bodies."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import _keep_logs
from ..procs import Executor, RedisServer

pytestmark = pytest.mark.real

APP_URL = "http://127.0.0.1:9/api/inngest"  # never called: nothing is sent in these tests


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    directory: pathlib.Path = tmp_path_factory.mktemp("sync-validation")
    redis = RedisServer(directory)
    executor = Executor(directory, redis.url, [])
    try:
        redis.start()
        executor.start()
        yield executor
    finally:
        for proc in (executor, redis):
            proc.stop()
        _keep_logs(directory)


def function(fn_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": fn_id,
        "name": fn_id,
        "triggers": [{"event": "sync/test"}],
        "steps": {"step": {"id": "step", "name": "step", "runtime": {
            "type": "http", "url": f"{APP_URL}?fnId={fn_id}&stepId=step"}}},
        **fields,
    }


def register(executor: Executor, app: str, functions: list[dict[str, Any]]) -> httpx.Response:
    body = {"appName": app, "url": APP_URL, "sdk": "raw:v0", "v": "0.1",
            "framework": "fast_api", "functions": functions}
    return httpx.post(f"{executor.url}/fn/register", json=body, timeout=10)


def apps(executor: Executor) -> list[str]:
    answer = httpx.get(f"{executor.url}/v1/apps", timeout=10)
    assert answer.status_code == 200, answer.text
    return [app["id"] for app in answer.json()["data"]]


BAD = {
    "cel-expression": ({"triggers": [{"event": "sync/test", "expression": "event.data.x =="}]},
                       "triggers[0].expression: invalid CEL expression"),
    "cron": ({"triggers": [{"cron": "every tuesday at noon"}]}, "triggers[0].cron"),
    "cron-zone": ({"triggers": [{"cron": "TZ=Mars/Olympus 0 9 * * *"}]},
                  "triggers[0].cron: unknown time zone"),
    "cancel-if": ({"cancel": [{"event": "sync/stop", "if": "async.data.id === event.data.id"}]},
                  "cancel[0].if: invalid CEL expression"),
    "timeouts-finish": ({"timeouts": {"finish": "abc"}}, "timeouts.finish"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_field_is_refused_at_sync(executor: Executor, case: str) -> None:
    fields, words = BAD[case]
    fn_id = f"bad-{case}"
    answer = register(executor, f"app-{case}", [function(f"fine-{case}"),
                                                 function(fn_id, **fields)])
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith(f"function '{fn_id}': "), error
    assert words in error
    # all or nothing: neither the app nor its valid function was registered
    assert f"app-{case}" not in apps(executor)
    assert not {fn_id, f"fine-{case}"} & set(executor.functions())


def test_the_same_functions_with_good_fields_sync(executor: Executor) -> None:
    good = [
        function("good-expression",
                 triggers=[{"event": "sync/test", "expression": "event.data.x == 1"}]),
        function("good-cron", triggers=[{"cron": "TZ=Europe/Paris 0 9 * * *"},
                                        {"cron": "@every 1h"}]),
        function("good-cancel",
                 cancel=[{"event": "sync/stop", "if": "async.data.id == event.data.id"}]),
        function("good-timeouts", timeouts={"start": "10s", "finish": "1m30s"}),
    ]
    answer = register(executor, "app-good", good)
    assert answer.status_code == 200, answer.text
    assert "app-good" in apps(executor)
    assert {fn["id"] for fn in good} <= set(executor.functions())
