"""Issue 10.9: property-based fuzzing of the public HTTP API from its OpenAPI document
(schemathesis over hypothesis): events, registration, run reads and actions, bulk
cancellation, checkpoints and event keys, with bodies valid and not, against a real dev
executor and a real production one (authenticated, so requests get past the key check).
Every answer must be below 500, arrive within the time bound, and, when it is a 4xx, be a
JSON error that names the problem. The example count is bounded, so CI runs it in seconds.

The executors run with --no-worker: the fuzzer registers functions at made-up URLs, and
nothing may be called there (load and fuzz tests stay on 127.0.0.1).
"""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import fakeredis
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.api import create_app
from executor.service import Executor as ExecutorService
from executor.service import Settings
from inngest_like import signing

from ..conftest import _keep_logs
from ..procs import Executor, RedisServer

pytestmark = pytest.mark.real

EXAMPLES = 15  # per operation and mode: ~20 operations x 2 modes, well under a minute
TIMEOUT_S = 10.0  # an answer slower than this is a hang
KEY = "signkey-prod-" + secrets.token_hex(32)
EVENT_KEY = "ek-" + secrets.token_hex(16)

# the document the executor serves at /openapi.json, built without any server running
schema = schemathesis.openapi.from_dict(
    create_app(ExecutorService(fakeredis.FakeAsyncRedis(), Settings())).openapi())


@pytest.fixture(scope="module")
def executors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Executor]]:
    directory: pathlib.Path = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer(directory)
    redis.start()
    dev = Executor(directory, redis.url, [], name="dev", extra=["--no-worker"])
    production = Executor(directory, redis.url, [], name="production",
                          extra=["--no-worker", "--signing-key", KEY, "--event-key", EVENT_KEY])
    production.args[production.args.index("dev")] = "start"
    try:
        dev.start()
        production.start()
        yield {"dev": dev, "production": production}
    finally:
        for proc in (dev, production, redis):
            proc.stop()
        _keep_logs(directory)


def answer_is_sound(case: Any, response: Any) -> None:
    status = response.status_code
    assert status < 500, f"{case.method} {case.formatted_path}: {status} {response.text[:300]}"
    if 400 <= status < 500:
        body = response.json()
        assert isinstance(body, dict), response.text[:300]
        error = body.get("error")
        assert isinstance(error, str) and len(error.strip()) >= 5, response.text[:300]
        assert body.get("status") == status, response.text[:300]
    assert response.elapsed < TIMEOUT_S  # seconds


def fuzz(case: Any, executor: Executor, headers: dict[str, str]) -> None:
    response = case.call(base_url=executor.url, headers=headers, timeout=TIMEOUT_S)
    answer_is_sound(case, response)
    if case.formatted_path == "/fn/register" and response.status_code == 200:
        send_to_registered(case.body, executor, headers)
    process = executor.process
    assert process is not None and process.poll() is None, "the executor died"


def send_to_registered(registration: dict[str, Any], executor: Executor,
                       headers: dict[str, str]) -> None:
    """What a sync is for: events for the functions it registered (their expressions,
    keys, durations and priorities are evaluated only now)."""
    names = {trigger["event"] for fn in registration.get("functions", [])
             for trigger in fn.get("triggers", [])
             if isinstance(trigger, dict) and isinstance(trigger.get("event"), str)
             and trigger["event"].strip() and not trigger["event"].startswith("inngest/")}
    events = [{"name": name[:512], "data": {"a": 1.5, "b": 2, "x": 1.0e308}}
              for name in sorted(names)][:20]
    if not events:
        return
    answer = httpx.post(f"{executor.url}/e/{EVENT_KEY}", json=events, headers=headers,
                        timeout=TIMEOUT_S)
    assert answer.status_code < 500, f"events after a sync: {answer.status_code} {answer.text}"


# derandomized: CI runs the same examples every time, and keeps no example database
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@schema.parametrize()
@SETTINGS
def test_dev_mode(case: Any, executors: dict[str, Executor]) -> None:
    fuzz(case, executors["dev"], {})


@schema.parametrize()
@SETTINGS
def test_production_mode(case: Any, executors: dict[str, Executor]) -> None:
    fuzz(case, executors["production"], {"Authorization": f"Bearer {signing.bearer(KEY)}"})


# -- hypothesis directly: well-formed syncs with hostile values, then their events ---------
# Random bodies rarely make a registration that passes validation, and the values that
# used to break the executor (huge durations, inf or NaN priorities) only bite when an
# event arrives. So: registrations whose shape is right and whose values are drawn from
# the edges, each followed by events for the function it registered.

durations = st.one_of(st.from_regex(r"\A[1-9][0-9]{0,29}(ms|s|m|h|d|w)\Z"),
                      st.integers(1, 10**19), st.text(max_size=6))
expressions = st.one_of(
    st.from_regex(r"\Aevent\.data\.(a|b|x) (\*|/|\+|-) [0-9]{1,3}(\.0|e308)?\Z"),
    st.sampled_from(["event.data.a", "double('nan')", "event.data.x * 10.0",
                     "event.data.l.map(v, v + 1).size()", "event.data.b > 1 ? 'pro' : 1",
                     "1" + "+1" * 300, "(" * 40 + "1" + ")" * 40]),
    st.text(max_size=20))
key = st.one_of(st.none(), expressions)
limit = st.integers(1, 10)
event_trigger = st.fixed_dictionaries({"event": st.just("fz/x")},
                                      optional={"expression": expressions})
cron_trigger = st.fixed_dictionaries({"cron": st.one_of(
    st.from_regex(r"\A@every [1-9][0-9]{0,400}(s|m|h)\Z"),
    st.sampled_from(["* * * * *", "TZ=Europe/Paris 0 9 * * *"]), st.text(max_size=12))})
# one flow-control option per function, so most draws pass validation and reach events
flow_options = st.one_of(
    st.builds(lambda p, b, k: {"throttle": {"limit": 1, "period": p, "burst": b, "key": k}},
              durations, st.integers(0, 3), key),
    st.builds(lambda p, k: {"rateLimit": {"limit": 2, "period": p, "key": k}}, durations, key),
    st.builds(lambda p, t, k: {"debounce": {"period": p, "timeout": t, "key": k}},
              durations, durations, key),
    st.builds(lambda t, c, k: {"batchEvents": {"maxSize": 3, "timeout": t, "if": c, "key": k}},
              durations, expressions, key),
    st.builds(lambda e: {"priority": {"run": e}}, expressions),
    st.builds(lambda m, k: {"singleton": {"mode": m, "key": k}},
              st.sampled_from(["skip", "cancel"]), key),
    st.builds(lambda n, k: {"concurrency": [{"limit": n, "key": k}]}, limit, key),
    st.builds(lambda c, t: {"cancel": [{"event": "fz/cancel", "if": c, "timeout": t}]},
              expressions, durations),
    st.builds(lambda a, b: {"timeouts": {"start": a, "finish": b}}, durations, durations),
    st.builds(lambda e: {"idempotency": e}, expressions),
)
function = st.builds(
    lambda triggers, flow: {"triggers": triggers, "steps": {"step": {"id": "step", "runtime": {
        "type": "http", "url": "http://127.0.0.1:9/api?fnId=fz-fn"}}}, **flow},
    st.lists(st.one_of(event_trigger, event_trigger, cron_trigger), min_size=1, max_size=2),
    flow_options)


@given(config=function, index=st.integers(0, 10**6))
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_synced_functions_take_their_events(config: dict[str, Any], index: int,
                                            executors: dict[str, Executor]) -> None:
    dev = executors["dev"]
    body = {"appName": f"fz-{index}", "url": "http://127.0.0.1:9/api",
            "functions": [{**config, "id": f"fz-fn-{index}"}]}
    answer = httpx.post(f"{dev.url}/fn/register", json=body, timeout=TIMEOUT_S)
    assert answer.status_code < 500, (body, answer.text)
    if answer.status_code != 200:
        assert answer.json()["error"], answer.text
        return
    events = [{"name": "fz/x", "data": {"a": 1.5, "b": 2, "x": 1.0e308, "l": [1, 2]}},
              {"name": "fz/cancel", "data": {"a": -1}}]
    sent = httpx.post(f"{dev.url}/e/fuzz", json=events, timeout=TIMEOUT_S)
    assert sent.status_code == 200, (body, sent.text)
    runs = httpx.get(f"{dev.url}/v1/events/{sent.json()['ids'][0]}/runs", timeout=TIMEOUT_S)
    assert runs.status_code == 200, runs.text
    assert httpx.get(f"{dev.url}/v1/functions", timeout=TIMEOUT_S).status_code == 200
