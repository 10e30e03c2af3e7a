"""The official Python SDK (`inngest` from PyPI, pinned in requirements.txt) against our
executor: an app written only with that package (app.py), served by uvicorn from a venv of its
own, must run unchanged. Every outcome is read back through the executor's /v1 API.

The venv is made once (under test-output/compat/) and reused while it holds the pinned
version; the official package never goes into the main environment."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from ...procs import Proc
from .. import scenarios
from ..harness import COMPAT_OUTPUT, CompatStack, run_of, start_compat_stack

pytestmark = pytest.mark.real

HERE = pathlib.Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
APP = "compat-py"


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
        stack.executor.wait_synced(*map(stack.fid, [*scenarios.FUNCTIONS, "sync-steps"]),
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
