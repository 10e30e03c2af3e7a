"""Issue 13: `GET /metrics` with real processes, scraped and parsed as Prometheus would; in
production mode it needs the signing key, a dashboard session or its own token, like the
heartbeat and usage endpoints under /v1."""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inngest_like import signing

from ..conftest import Stack, app_stack
from ..procs import Executor, RedisServer

pytestmark = pytest.mark.real

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **headers: str) -> Samples:
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with app_stack(tmp_path_factory, "agent-metrics", "tests.apps.agent_app:app",
                   "agent-metered") as stack:
        yield stack


def test_metrics_are_scraped_and_parsed(agent: Stack) -> None:
    ex = agent.executor
    ex.wait_run(ex.send("agent/metered"), timeout=30)
    got = scrape(ex.url)
    fn = (("function", "agent-metered"),)
    assert got[("inngest_like_runs_started_total", fn)] == 1
    assert got[("inngest_like_runs_ended_total",
                (("function", "agent-metered"), ("status", "Completed")))] == 1
    assert got[("inngest_like_step_retries_total", fn)] == 2
    retried = (("function", "agent-metered"), ("status", "Retrying"))
    assert got[("inngest_like_step_duration_seconds_count", retried)] == 2
    infinite = tuple(sorted((*retried, ("le", "+Inf"))))
    assert got[("inngest_like_step_duration_seconds_bucket", infinite)] == 2
    tokens = (("function", "agent-metered"), ("kind", "input"), ("model", "sim-1"))
    assert got[("inngest_like_tokens_total", tokens)] == 450
    assert got[("inngest_like_cost_usd_total",
                (("function", "agent-metered"), ("model", "sim-1")))] == pytest.approx(0.045)
    for gauge in (("inngest_like_queue_depth", (("state", "ready"),)),
                  ("inngest_like_queue_oldest_ready_age_seconds", ()),
                  ("inngest_like_runs_stalled", ()),
                  ("inngest_like_lease_expiries_total", ())):
        assert gauge in got


def test_metrics_are_guarded_in_production(tmp_path: pathlib.Path) -> None:
    key = "signkey-test-" + secrets.token_hex(32)
    token = "metrics-" + secrets.token_hex(8)
    redis = RedisServer(tmp_path)
    redis.start()
    ex = Executor(tmp_path, redis.url, [], extra=["--signing-key", key,
                                                  "--metrics-token", token])
    ex.args[ex.args.index("dev")] = "start"
    try:
        ex.start()
        answer = httpx.get(f"{ex.url}/metrics", timeout=10)
        assert answer.status_code == 401 and "Bearer" in answer.json()["error"]
        assert httpx.get(f"{ex.url}/metrics", timeout=10,
                         headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert scrape(ex.url, Authorization=f"Bearer {token}")
        assert scrape(ex.url, Authorization=f"Bearer {signing.bearer(key)}")
        # the other agent-operations endpoints are guarded like the rest of /v1
        beat = httpx.post(f"{ex.url}/v1/runs/r1/heartbeat", json={"call": "r1:1.ab"},
                          timeout=10)
        assert beat.status_code == 401
        assert httpx.get(f"{ex.url}/v1/functions/f/usage", timeout=10).status_code == 401
        signed = httpx.post(f"{ex.url}/v1/runs/r1/heartbeat", json={"call": "r1:1.ab"},
                            headers={"Authorization": f"Bearer {signing.bearer(key)}"},
                            timeout=10)
        assert signed.status_code == 200 and signed.json()["alive"] is False
    finally:
        ex.stop()
        redis.stop()
