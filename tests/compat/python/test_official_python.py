"""The official Python SDK (`inngest` from PyPI, pinned in requirements.txt) against our
executor: an app written only with that package (app.py), served by uvicorn from a venv of its
own, must run unchanged. Every outcome is read back through the executor's /v1 API.

The venv is made once (under test-output/compat/) and reused while it holds the pinned
version; the official package never goes into the main environment."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ...procs import Proc, free_port, wait_for
from .. import gql, scenarios
from ..harness import (
    COMPAT_OUTPUT,
    CompatStack,
    failed_event_of,
    run_of,
    start_compat_stack,
    stays,
    step_named,
    wait_step,
)

pytestmark = pytest.mark.real

HERE = pathlib.Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
APP = "compat-py"
PY_ONLY = ["sync-steps", "ai-infer", "ai-parallel", "unexpected-step", "parallel-pauses",
           "big-batch"]


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip().startswith("inngest=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{REQUIREMENTS} must pin inngest==<version>")


def installed_version(python: pathlib.Path) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('inngest'))"],
        capture_output=True, text=True, timeout=60,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


@pytest.fixture(scope="session")
def official_python() -> pathlib.Path:
    """The python of a venv that has the pinned official SDK (made once, then reused)."""
    version = pinned_version()
    venv = COMPAT_OUTPUT / f"venv-inngest-py-{version}"
    python = venv / "bin" / "python"
    if installed_version(python) == version:
        return python
    COMPAT_OUTPUT.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", "--system-site-packages", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REQUIREMENTS)],
    ]
    for args in steps:
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(f"could not make the official SDK's venv: {' '.join(args)} exited "
                        f"{done.returncode}\n{done.stdout}\n{done.stderr}")
    got = installed_version(python)
    if got != version:
        pytest.fail(f"{venv} has inngest {got!r}, wanted {version}")
    return python


def python_stack(official_python: pathlib.Path, tmp_path_factory: pytest.TempPathFactory,
                 production: bool) -> Iterator[CompatStack]:
    directory = tmp_path_factory.mktemp("compat-py-prod" if production else "compat-py")

    def make_app(port: int, env: dict[str, str]) -> Proc:
        return Proc(
            f"official-py-app-{port}",
            [str(official_python), "-m", "uvicorn", "--app-dir", str(HERE), "app:app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            directory, env,
        )

    stack = start_compat_stack(APP, directory, make_app, production=production)
    try:
        stack.executor.wait_synced(*map(stack.fid, [*scenarios.FUNCTIONS, *PY_ONLY]),
                                   timeout=30)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def compat(official_python: pathlib.Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatStack]:
    """Dev mode: `executor dev`, INNGEST_DEV=1."""
    yield from python_stack(official_python, tmp_path_factory, production=False)


@pytest.fixture(scope="module")
def prod(official_python: pathlib.Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatStack]:
    """Production: `executor start` with keys; the SDK verifies signed calls (cloud mode)."""
    yield from python_stack(official_python, tmp_path_factory, production=True)


def test_sync_registers_every_function_and_on_failure_handler(compat: CompatStack) -> None:
    scenarios.check_sync_registers_every_function_and_on_failure_handler(compat)


def test_several_steps_run_once_each(compat: CompatStack) -> None:
    scenarios.check_several_steps_run_once_each(compat)


def test_sleep_resumes_after_the_duration(compat: CompatStack) -> None:
    scenarios.check_sleep_resumes_after_the_duration(compat)


def test_wait_for_event_matched(compat: CompatStack) -> None:
    scenarios.check_wait_for_event_matched(compat)


def test_wait_for_event_timed_out(compat: CompatStack) -> None:
    scenarios.check_wait_for_event_timed_out(compat)


def test_invoke_returns_the_other_functions_result(compat: CompatStack) -> None:
    scenarios.check_invoke_returns_the_other_functions_result(compat)


def test_group_parallel_runs_each_part_once(compat: CompatStack) -> None:
    scenarios.check_group_parallel_runs_each_part_once(compat)


def test_send_event_fans_out_to_a_second_function(compat: CompatStack) -> None:
    scenarios.check_send_event_fans_out_to_a_second_function(compat)


def test_retry_after_error_delays_the_retry(compat: CompatStack) -> None:
    scenarios.check_retry_after_error_delays_the_retry(compat)


def test_non_retriable_error_fails_at_once(compat: CompatStack) -> None:
    scenarios.check_non_retriable_error_fails_at_once(compat)


def test_on_failure_handler_runs_once_with_error_and_event(compat: CompatStack) -> None:
    scenarios.check_on_failure_handler_runs_once_with_error_and_event(compat)


def test_cancel_event_cancels_a_sleeping_run(compat: CompatStack) -> None:
    scenarios.check_cancel_event_cancels_a_sleeping_run(compat)


def test_large_state_goes_through_use_api(compat: CompatStack) -> None:
    scenarios.check_large_state_goes_through_use_api(compat)


def test_invoke_gives_the_callees_error_and_times_out(compat: CompatStack) -> None:
    scenarios.check_invoke_gives_the_callees_error_and_times_out(compat)


def test_function_level_error_is_retried(compat: CompatStack) -> None:
    scenarios.check_function_level_error_is_retried(compat)


def test_sleep_until_a_moment(compat: CompatStack) -> None:
    scenarios.check_sleep_until_a_moment(compat)


def test_sync_handler_with_steps_sleep_and_parallel(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/sync", {})
    run = run_of(ex, event_id, compat.fid("sync-steps"), "Completed", timeout=20)
    assert run["output"] == {"first": 1, "second": 2, "parts": ["p1", "p2"]}


def test_parallel_group_with_a_sleep(compat: CompatStack) -> None:
    scenarios.check_parallel_group_with_a_sleep(compat)


def test_debounce_starts_one_run_with_the_last_event(compat: CompatStack) -> None:
    scenarios.check_debounce_starts_one_run_with_the_last_event(compat)


def test_concurrency_limit_serialises_steps(compat: CompatStack) -> None:
    scenarios.check_concurrency_limit_serialises_steps(compat)


def test_idempotency_key_starts_one_run(compat: CompatStack) -> None:
    scenarios.check_idempotency_key_starts_one_run(compat)


def test_batch_events_start_one_run_with_all_events(compat: CompatStack) -> None:
    scenarios.check_batch_events_start_one_run_with_all_events(compat)


def test_throttle_spreads_run_starts(compat: CompatStack) -> None:
    scenarios.check_throttle_spreads_run_starts(compat)


def test_rate_limit_drops_the_excess_event(compat: CompatStack) -> None:
    scenarios.check_rate_limit_drops_the_excess_event(compat)


def test_singleton_skips_while_a_run_is_active(compat: CompatStack) -> None:
    scenarios.check_singleton_skips_while_a_run_is_active(compat)


def test_finish_timeout_cancels_the_run(compat: CompatStack) -> None:
    scenarios.check_finish_timeout_cancels_the_run(compat)


def test_priority_expression_is_accepted(compat: CompatStack) -> None:
    scenarios.check_priority_expression_is_accepted(compat)


@pytest.mark.parametrize("scenario", scenarios.PRODUCTION, ids=scenarios.scenario_id)
def test_production_mode(prod: CompatStack, scenario: Callable[[CompatStack], None]) -> None:
    scenario(prod)


# -- /v0/gql ----------------------------------------------------------------------------------
def test_gql_reads_a_completed_run_its_trigger_and_step_outputs(compat: CompatStack) -> None:
    scenarios.check_gql_reads_a_completed_run_its_trigger_and_step_outputs(compat)


def test_gql_reads_a_failed_run_and_its_failed_step(compat: CompatStack) -> None:
    scenarios.check_gql_reads_a_failed_run_and_its_failed_step(compat)


def test_gql_refuses_a_field_it_does_not_serve(compat: CompatStack) -> None:
    scenarios.check_gql_refuses_a_field_it_does_not_serve(compat)


def test_gql_in_production_needs_the_signing_key(prod: CompatStack) -> None:
    ex = prod.executor
    query = "query($id: String!) { run(runID: $id) { status } }"
    refused = gql.post(ex, query, {"id": "x"}, headers={})
    assert refused.status_code == 401, refused.text
    assert "error" in refused.json()
    event_id = ex.send("compat/steps", {"n": 2})
    (run_id,) = gql.run_ids_of_event(ex, event_id)  # with the Bearer key: answered
    assert gql.run_when(ex, run_id, "COMPLETED")["output"]["doubled"] == 4


# -- a failed run's output: the SDK's error body as sent ------------------------------------
def test_failed_run_output_is_the_sdks_error_body(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/non-retriable", {})
    run = run_of(ex, event_id, compat.fid("non-retriable"), "Failed", timeout=20)
    output = run["output"]
    assert set(output) == {"code", "message", "name", "stack"}, output
    assert output["code"] == "non_retriable_error"
    assert output["name"] == "NonRetriableError" and output["message"] == "card declined"
    assert isinstance(output["stack"], str)
    (run_id,) = gql.run_ids_of_event(ex, event_id)
    assert gql.run_when(ex, run_id, "FAILED")["output"] == output


def test_failed_run_output_keeps_a_null_stack(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/unexpected-step", {})
    run = run_of(ex, event_id, compat.fid("unexpected-step"), "Failed", timeout=20)
    assert run["output"] == {
        "code": "step_unexpected", "name": "StepUnexpectedError", "stack": None,
        "message": 'found step "unexpected" when targeting a different step'}
    # the failure event keeps the normalized error on_failure handlers read
    failed = failed_event_of(ex, run["run_id"])
    assert failed["data"]["error"] == {
        "error": "invalid status code: 500", "name": "StepUnexpectedError", "stack": "",
        "message": 'found step "unexpected" when targeting a different step'}


# -- step.ai.infer: the executor calls the model provider ----------------------------------
@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pathlib.Path]]:
    """A fake Anthropic/OpenAI-style provider on 127.0.0.1 (tests/fakes/model_provider.py):
    its URL and the file where it notes every request it received."""
    directory = tmp_path_factory.mktemp("provider")
    port = free_port()
    requests_log = directory / "requests.jsonl"
    proc = Proc("fake-provider", [sys.executable, "-m", "uvicorn",
                                  "tests.fakes.model_provider:app", "--host", "127.0.0.1",
                                  "--port", str(port), "--log-level", "warning"],
                directory, {"PROVIDER_LOG": str(requests_log)})
    proc.start()
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 404,
                 30, "the fake provider to serve")
        yield f"http://127.0.0.1:{port}", requests_log
    finally:
        proc.stop()


def provider_requests(log: pathlib.Path, mode: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["path"].startswith(f"/{mode}/")]


def test_ai_infer_is_made_by_the_executor_with_the_ops_request(
        compat: CompatStack, provider: tuple[str, pathlib.Path]) -> None:
    ex = compat.executor
    url, log = provider
    mode = f"ok-{uuid.uuid4().hex[:8]}"
    event_id = ex.send("compat/ai", {"base_url": f"{url}/{mode}/v1", "say": "Say hi"})
    run = run_of(ex, event_id, compat.fid("ai-infer"), "Completed", timeout=30)
    (sent,) = provider_requests(log, mode)
    assert sent["method"] == "POST" and sent["path"] == f"/{mode}/v1/messages"
    assert sent["headers"]["x-api-key"] == "sk-ant-fake-000"
    assert sent["headers"]["x-my-header"] == "my-value"
    assert sent["headers"]["content-type"] == "application/json"
    assert "authorization" not in sent["headers"]
    body = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 100,
            "model": "claude-fake"}
    assert json.loads(sent["body"]) == body
    answer = run["output"]["answer"]  # the provider's answer is the step's output
    assert answer["id"] == "msg_fake" and answer["echo"] == body
    assert answer["usage"]["input_tokens"] == 9
    step = step_named(ex, run["run_id"], "ask-model")
    assert step is not None and step["output"] == answer
    assert step["op"] == "AIGateway" and step["status"] == "Completed"
    assert step["usage"] == {"input_tokens": 9, "output_tokens": 11}
    assert step["model"] == "claude-fake-1"
    assert compat.counts()[(run["run_id"], "after")] == 1
    # and through /v0/gql, as the official suite reads it
    (run_id,) = gql.run_ids_of_event(ex, event_id)
    assert gql.step_output(ex, run_id, "ask-model") == {"data": answer}


def test_ai_infer_openai_style_sends_a_bearer_key_and_records_usage(
        compat: CompatStack, provider: tuple[str, pathlib.Path]) -> None:
    ex = compat.executor
    url, log = provider
    mode = f"ok-{uuid.uuid4().hex[:8]}"
    event_id = ex.send("compat/ai", {"base_url": f"{url}/{mode}/v1", "say": "Hello",
                                     "provider": "openai"})
    run = run_of(ex, event_id, compat.fid("ai-infer"), "Completed", timeout=30)
    (sent,) = provider_requests(log, mode)
    assert sent["path"] == f"/{mode}/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-openai-fake"
    assert run["output"]["answer"]["id"] == "chatcmpl-fake"
    step = step_named(ex, run["run_id"], "ask-model")
    assert step is not None
    assert step["usage"] == {"input_tokens": 21, "output_tokens": 4}


def test_ai_infer_is_retried_like_a_step(
        compat: CompatStack, provider: tuple[str, pathlib.Path]) -> None:
    ex = compat.executor
    url, log = provider
    mode = f"flaky-{uuid.uuid4().hex[:8]}"  # 503 with Retry-After: 1 once, then answers
    event_id = ex.send("compat/ai", {"base_url": f"{url}/{mode}/v1", "say": "again"})
    run = run_of(ex, event_id, compat.fid("ai-infer"), "Completed", timeout=30)
    assert run["output"]["answer"]["id"] == "msg_fake"
    assert len(provider_requests(log, mode)) == 2
    step = step_named(ex, run["run_id"], "ask-model")
    assert step is not None and step["attempts"] == 2 and step["status"] == "Completed"


def test_ai_infer_failure_is_raised_in_the_function_after_the_retries(
        compat: CompatStack, provider: tuple[str, pathlib.Path]) -> None:
    ex = compat.executor
    url, _ = provider
    event_id = ex.send("compat/ai", {"base_url": f"{url}/down/v1", "say": "anyone?"})
    run = run_of(ex, event_id, compat.fid("ai-infer"), "Completed", timeout=30)
    error = run["output"]["error"]  # caught as StepError by the function
    assert error["name"] == "AIGatewayError"
    assert "answered 500" in error["message"] and "overloaded" in error["message"]
    step = step_named(ex, run["run_id"], "ask-model")
    assert step is not None and step["status"] == "Failed" and step["attempts"] == 2


def test_ai_infer_in_a_parallel_group(
        compat: CompatStack, provider: tuple[str, pathlib.Path]) -> None:
    ex = compat.executor
    url, log = provider
    mode = f"ok-{uuid.uuid4().hex[:8]}"
    event_id = ex.send("compat/ai-parallel", {"base_url": f"{url}/{mode}/v1"})
    run = run_of(ex, event_id, compat.fid("ai-parallel"), "Completed", timeout=30)
    assert run["output"] == ["one", "two"]
    assert len(provider_requests(log, mode)) == 2


# -- a wait and an invoke beside a step, in one group.parallel -------------------------------
def test_wait_and_invoke_in_a_parallel_group(compat: CompatStack) -> None:
    ex = compat.executor
    key = uuid.uuid4().hex
    event_id = ex.send("compat/parallel-pauses", {"key": key})
    run = run_of(ex, event_id, compat.fid("parallel-pauses"), "Running", timeout=10)
    run_id = run["run_id"]
    wait_step(ex, run_id, "quick", "Completed")
    wait_step(ex, run_id, "call-adder", "Completed")
    wait_step(ex, run_id, "wait-reply", "Waiting")
    stays(lambda: (run_id, "after") not in compat.counts(), 1.0,
          "the run must not go on while its wait is pending")
    ex.send("compat/pp-reply", {"key": key, "answer": "yes"})
    done = run_of(ex, event_id, compat.fid("parallel-pauses"), "Completed", timeout=20)
    assert done["output"] == {"quick": "quick-done", "reply": {"key": key, "answer": "yes"},
                              "added": {"sum": 3}}
    counts = compat.counts()
    assert counts[(run_id, "quick")] == 1 and counts[(run_id, "after")] == 1


# -- events: ~1 MiB each in dev, and partial batches -----------------------------------------
def test_a_batch_of_1_mib_events_runs_through_use_api(compat: CompatStack) -> None:
    ex = compat.executor
    size = 1024 * 1024
    batch = [{"name": "compat/big-batch", "data": {"msg": "a" * size}} for _ in range(4)]
    answer = httpx.post(f"{ex.url}/e/dev", json=batch, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    first = answer.json()["ids"][0]
    run = run_of(ex, first, compat.fid("big-batch"), "Completed", timeout=30)
    assert run["output"] == {"events": 4, "sizes": [size] * 4}
    # over 4 MiB of events: the SDK fetched them (GET /v0/runs/{id}/batch)
    assert any(c.startswith("use_api=true/true") for c in compat.calls(run["run_id"]))


def test_official_client_partial_send_gets_the_accepted_ids(
        compat: CompatStack, official_python: pathlib.Path) -> None:
    ex = compat.executor
    name = f"compat/partial-{uuid.uuid4().hex[:8]}"
    script = textwrap.dedent(f"""
        import asyncio, json, inngest
        from inngest._internal import errors
        client = inngest.Inngest(app_id="partial", is_production=False,
                                 event_api_base_url={ex.url!r})
        async def main():
            try:
                await client.send([inngest.Event(name={name!r}, data={{"n": 1}}),
                                   inngest.Event(name=""), inngest.Event(name={name!r})])
            except errors.SendEventsError as err:
                print(json.dumps({{"ids": err.ids, "message": str(err)}}))
        asyncio.run(main())
    """)
    done = subprocess.run([str(official_python), "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reported = json.loads(done.stdout)
    assert len(reported["ids"]) == 1
    assert "events[1].name" in reported["message"]
    stored = httpx.get(f"{ex.url}/v1/events", params={"name": name}, timeout=10).json()["data"]
    assert [e["id"] for e in stored] == reported["ids"]  # the first one, and only it
