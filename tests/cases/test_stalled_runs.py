"""Issue 13: stall detection with real processes. A run whose step call goes quiet for
longer than the function's stall threshold is flagged (why, since when), its
`inngest/function.stalled` event is sent once (a function alerts on it), the dashboard
filters it; its sleep before did not count, and the flag clears when the call answers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ..conftest import Stack, app_stack
from ..procs import wait_for

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "agent-stalls", "tests.apps.agent_app:app",
                   "agent-stalls", "agent-stall-alert") as stack:
        yield stack


def stalled_events(stack: Stack, run_id: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{stack.executor.url}/v1/events",
                       params={"name": "inngest/function.stalled", "limit": 100}, timeout=10)
    return [e for e in answer.json()["data"] if e["data"]["run_id"] == run_id]


def test_a_stalled_run_is_flagged_and_its_event_sent(agent: Stack) -> None:
    ex = agent.executor
    event_id = ex.send("agent/stalls", {"seconds": 4})
    run = ex.wait_sleeping(event_id, "nap")  # a 2 s nap, twice the 1 s threshold
    run_id = run["run_id"]
    while ex.run(run_id)["status"] == "Running" and (run_id, "provider") not in agent.counts():
        assert ex.run(run_id)["stalled"] is None  # sleeping is not stalling
        time.sleep(0.1)

    stalled = wait_for(lambda: ex.run(run_id)["stalled"], 10, "the run to be flagged")
    assert stalled["reason"].startswith("no answer from the app for over 1s: the call for "
                                        "the run's next step (attempt 1) is still running")
    provider_at = next(at for r, w, at in agent.lines() if r == run_id and w == "provider")
    assert abs(stalled["since_ms"] / 1000 - provider_at) < 1.0  # since the quiet call began
    listed = httpx.get(f"{ex.url}/", params={"status": "Stalled"}, timeout=10).text
    assert run_id in listed
    page = httpx.get(f"{ex.url}/runs/{run_id}", timeout=10).text
    assert 'id="stalled"' in page and "no answer from the app for over 1s" in page

    (event,) = wait_for(lambda: stalled_events(agent, run_id), 10, "the stalled event")
    assert event["data"]["function_id"] == "agent-stalls"
    alert = ex.wait_run(event["id"], "Completed", timeout=15)
    assert alert["output"] == {"run_id": run_id, "reason": stalled["reason"]}

    done = ex.wait_run(event_id, "Completed", timeout=15)
    assert done["output"] == "answered at last" and done["stalled"] is None
    assert run_id not in httpx.get(f"{ex.url}/", params={"status": "Stalled"}, timeout=10).text
    assert len(stalled_events(agent, run_id)) == 1  # one stall, one event
    assert agent.counts()[(run_id, "stall-alert")] == 1
