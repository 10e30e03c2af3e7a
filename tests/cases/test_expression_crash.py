"""Issue 10.1 with real processes: the 60 KB expression that used to kill the executor with
SIGSEGV, sent as a trigger `expression`, a cancellation `if` and a `wait_for_event` `if`,
fails its registration, its cancellation request or its run with a clear error, and the
executor process is still alive and serving afterwards."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import httpx
import pytest

from ..apps.hostile_app import HUGE_IF
from ..hostile import HostileStack, hostile_stack

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileStack]:
    directory: pathlib.Path = tmp_path_factory.mktemp("expressions")
    with hostile_stack(directory) as stack:
        yield stack


def function(fn_id: str, **config: object) -> dict[str, object]:
    return {"id": fn_id, "name": fn_id, "triggers": [{"event": "test/x"}], "steps": {"step": {
        "id": "step", "runtime": {"type": "http", "url": "http://127.0.0.1:9/api"}}}, **config}


@pytest.mark.parametrize(("config", "field"), [
    ({"triggers": [{"event": "test/x", "expression": HUGE_IF}]}, "triggers[0].expression"),
    ({"cancel": [{"event": "test/stop", "if": HUGE_IF}]}, "cancel[0].if"),
    ({"priority": {"run": HUGE_IF}}, "priority.run"),
    ({"batchEvents": {"maxSize": 5, "timeout": "5s", "if": HUGE_IF}}, "batchEvents.if"),
])
def test_registration_with_the_expression_is_refused(hostile: HostileStack,
                                                     config: dict[str, object],
                                                     field: str) -> None:
    body = {"appName": "huge", "url": "http://127.0.0.1:9/api",
            "functions": [function("huge-fn", **config)]}
    answer = httpx.post(f"{hostile.executor.url}/fn/register", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert f"{field}:" in error and "longer than 4096 characters" in error, error
    assert hostile.alive()


def test_cancellation_with_the_expression_is_refused(hostile: HostileStack) -> None:
    answer = httpx.post(f"{hostile.executor.url}/v1/cancellations", timeout=30,
                        json={"function_id": "any-fn", "if": HUGE_IF})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("if: invalid CEL expression: longer than")
    assert hostile.alive()


def test_a_wait_with_the_expression_fails_its_run_and_events_still_flow(
        hostile: HostileStack) -> None:
    hostile.register("waits-huge", "/wait-huge", "test/wait")
    event_id = hostile.executor.send("test/wait")
    run = hostile.executor.wait_run(event_id, "Failed")
    message = run["output"]["message"]
    assert "opts.if" in message and "longer than 4096 characters" in message, message
    # the events such a wait would have been offered no longer reach the library
    hostile.executor.send("test/approved", {"x": 1})
    assert hostile.alive()
    assert hostile.seen().count("/wait-huge") == 1  # failed at once: no retry of the same
