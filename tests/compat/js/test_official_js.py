"""The official JS SDK (npm `inngest`, pinned exactly in package.json and package-lock.json)
against our executor: an app written only with that package (app.js, plain ESM, no build step),
served by Node's http server through `inngest/node`, must run unchanged. Every outcome is read
back through the executor's /v1 API.

`npm ci` installs the SDK into tests/compat/js/node_modules when it is missing (or holds another
version). CI machines have node and npm: without them this suite fails, it does not skip."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from ...procs import Proc
from .. import scenarios
from ..harness import CompatStack, run_of, start_compat_stack, wait_step

pytestmark = pytest.mark.real

HERE = pathlib.Path(__file__).resolve().parent
APP = "compat-js"
JS_ONLY = ["waiter-match", "race"]


def pinned_version() -> str:
    lock = json.loads((HERE / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/inngest"]["version"])


def installed_version() -> str | None:
    manifest = HERE / "node_modules" / "inngest" / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text()).get("version"))


@pytest.fixture(scope="session")
def node() -> str:
    """node, with the pinned SDK installed by `npm ci` when node_modules lacks it."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if not node_bin or not npm_bin:
        pytest.fail("the official JS SDK suite needs node and npm on PATH "
                    f"(node: {node_bin}, npm: {npm_bin}); install Node.js >= 20 with npm")
    version = pinned_version()
    if installed_version() != version:
        done = subprocess.run(
            [npm_bin, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=HERE, capture_output=True, text=True, timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {HERE} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    got = installed_version()
    if got != version:
        pytest.fail(f"{HERE / 'node_modules'} has inngest {got!r}, the lock pins {version}")
    return node_bin


def js_stack(node: str, tmp_path_factory: pytest.TempPathFactory,
             production: bool) -> Iterator[CompatStack]:
    directory = tmp_path_factory.mktemp("compat-js-prod" if production else "compat-js")

    def make_app(port: int, env: dict[str, str]) -> Proc:
        return Proc(f"official-js-app-{port}", [node, str(HERE / "app.js")], directory,
                    {**env, "PORT": str(port)})

    stack = start_compat_stack(APP, directory, make_app, production=production)
    try:
        stack.executor.wait_synced(*map(stack.fid, [*scenarios.FUNCTIONS, *JS_ONLY]), timeout=30)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def compat(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatStack]:
    """Dev mode: `executor dev`, INNGEST_DEV=1."""
    yield from js_stack(node, tmp_path_factory, production=False)


@pytest.fixture(scope="module")
def prod(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CompatStack]:
    """Production: `executor start` with keys; the SDK verifies signed calls (cloud mode), and
    checkpoints with a Bearer token that keeps the `signkey-<env>-` prefix."""
    yield from js_stack(node, tmp_path_factory, production=True)


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


def check_checkpointing(compat: CompatStack) -> None:
    """Protocol §8: with `ctx.fn_id` set, v4 runs consecutive steps in one request, saves each
    through POST /v1/checkpoint/{run}/async and ends with a RunComplete op."""
    ex = compat.executor
    event_id = ex.send("compat/steps", {"n": 5})
    run = run_of(ex, event_id, compat.fid("steps"), "Completed")
    assert run["output"] == {"n": 5, "doubled": 10, "tags": ["a", "b"], "third": None}
    calls = compat.calls(run["run_id"])
    # one request ran the three steps; before it, an idle executor's eager first call, which
    # v4 answers plan-only (it honours disable_immediate_execution: no step body runs)
    assert calls in (["use_api=false/false:fn_id=set"] * n for n in (1, 2)), calls
    counts = compat.counts()
    assert [counts[(run["run_id"], name)] for name in ("first", "second", "third")] == [1] * 3
    steps = ex.steps(run["run_id"])
    assert [s["name"] for s in steps] == ["first", "second", "third"]
    assert [s.get("output") for s in steps] == [5, {"doubled": 10, "tags": ["a", "b"]}, None]


def test_checkpointing_runs_consecutive_steps_in_one_request(compat: CompatStack) -> None:
    check_checkpointing(compat)


def test_wait_for_event_match_shorthand(compat: CompatStack) -> None:
    ex = compat.executor
    me = scenarios.unique()
    event_id = ex.send("compat/wait-match", {"id": me})
    run = run_of(ex, event_id, compat.fid("waiter-match"), "Running")
    wait_step(ex, run["run_id"], "wait-match", "Waiting")
    ex.send("compat/reply", {"id": "someone-else"})
    ex.send("compat/reply", {"id": me, "answer": "yes"})
    done = run_of(ex, event_id, compat.fid("waiter-match"), "Completed", timeout=20)
    assert done["output"] == {"matched": {"id": me, "answer": "yes"}}


def test_group_parallel_race_goes_on_with_the_first_step(compat: CompatStack) -> None:
    """group.parallel({mode: "race"}): the steps carry `opts.parallelMode: "race"`, so the
    run resumes as soon as the fast step is done, while the slow one (1.5 s) still runs; the
    slow step, planned again by later discoveries, still runs once."""
    ex = compat.executor
    event_id = ex.send("compat/race", {})
    run = run_of(ex, event_id, compat.fid("race"), "Completed", timeout=20)
    assert run["output"] == {"winner": "fast", "after": "fast won"}
    counts = compat.counts()
    assert counts[(run["run_id"], "fast")] == 1
    assert counts[(run["run_id"], "slow")] == 1
    steps = {s["name"]: s for s in ex.steps(run["run_id"])}
    assert steps["after-race"]["ended_at"] < steps["slow"]["ended_at"], steps


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


@pytest.mark.parametrize("scenario", [*scenarios.PRODUCTION, check_checkpointing],
                         ids=scenarios.scenario_id)
def test_production_mode(prod: CompatStack, scenario: Callable[[CompatStack], None]) -> None:
    scenario(prod)


def test_gql_reads_a_completed_run_its_trigger_and_step_outputs(compat: CompatStack) -> None:
    scenarios.check_gql_reads_a_completed_run_its_trigger_and_step_outputs(compat)


def test_gql_reads_a_failed_run_and_its_failed_step(compat: CompatStack) -> None:
    scenarios.check_gql_reads_a_failed_run_and_its_failed_step(compat)


def test_gql_refuses_a_field_it_does_not_serve(compat: CompatStack) -> None:
    scenarios.check_gql_refuses_a_field_it_does_not_serve(compat)
