"""The scenarios both compat suites run, one per kind of function; each suite's app serves the
same function ids and event names, so one check fits both. `compat.fid` maps a local function
id to the composite id (`<app id>-<fn id>`) the executor knows it by."""

from __future__ import annotations

import time
import uuid

from . import gql
from .harness import CompatStack, failed_event_of, run_of, stays, step_named, wait_step

FUNCTIONS = [
    "steps", "sleeper", "waiter", "adder", "invoker", "parallel", "fanout", "fan-target",
    "retry-after", "non-retriable", "doomed", "doomed-failure", "cancellable", "big-state",
    "fragile", "slow", "invoke-errors", "flaky-fn", "sleep-until", "parallel-mixed",
    "debounced", "serial", "idempotent", "batched", "throttled", "rate-limited", "singleton",
    "timed", "prioritized",
]


def unique() -> str:
    return uuid.uuid4().hex[:12]


def check_sync_registers_every_function_and_on_failure_handler(compat: CompatStack) -> None:
    ids = compat.executor.functions()
    assert {compat.fid(fn) for fn in FUNCTIONS} <= set(ids)


def check_several_steps_run_once_each(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/steps", {"n": 21})
    run = run_of(ex, event_id, compat.fid("steps"), "Completed")
    assert run["output"] == {"n": 21, "doubled": 42, "tags": ["a", "b"], "third": None}
    names = [s["name"] for s in ex.steps(run["run_id"])]
    assert names == ["first", "second", "third"]
    assert step_named(ex, run["run_id"], "second")["output"] == {"doubled": 42, "tags": ["a", "b"]}
    counts = compat.counts()
    for what in ("first", "second", "third"):
        assert counts[(run["run_id"], what)] == 1, what


def check_sleep_resumes_after_the_duration(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/sleep", {"seconds": 2})
    run = run_of(ex, event_id, compat.fid("sleeper"), "Completed", timeout=20)
    assert run["output"] == "rested"
    (before,) = compat.times(run["run_id"], "before")
    (after,) = compat.times(run["run_id"], "after")
    assert after - before >= 1.9
    assert step_named(ex, run["run_id"], "nap") is not None


def check_wait_for_event_matched(compat: CompatStack) -> None:
    ex = compat.executor
    me = unique()
    event_id = ex.send("compat/wait", {"id": me, "timeout_s": 30})
    run = run_of(ex, event_id, compat.fid("waiter"), "Running")
    wait_step(ex, run["run_id"], "wait-reply", "Waiting")
    ex.send("compat/reply", {"id": "someone-else", "answer": "no"})
    reply_id = ex.send("compat/reply", {"id": me, "answer": "yes"})
    done = run_of(ex, event_id, compat.fid("waiter"), "Completed", timeout=20)
    out = done["output"]
    assert out["matched"] == {"id": me, "answer": "yes"}
    assert out["reply_name"] == "compat/reply"
    assert out["reply_id"] == reply_id
    assert compat.counts()[(run["run_id"], "after")] == 1


def check_wait_for_event_timed_out(compat: CompatStack) -> None:
    ex = compat.executor
    started = time.monotonic()
    event_id = ex.send("compat/wait", {"id": unique(), "timeout_s": 2})
    run = run_of(ex, event_id, compat.fid("waiter"), "Completed", timeout=20)
    assert time.monotonic() - started >= 1.9
    assert run["output"] == {"matched": None}
    assert compat.counts()[(run["run_id"], "after")] == 1


def check_invoke_returns_the_other_functions_result(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/invoke", {"a": 2, "b": 3})
    run = run_of(ex, event_id, compat.fid("invoker"), "Completed", timeout=20)
    assert run["output"] == {"invoked": {"sum": 5}, "after": "after-invoke"}
    assert step_named(ex, run["run_id"], "call-adder")["output"] == {"sum": 5}


def check_group_parallel_runs_each_part_once(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/parallel", {})
    run = run_of(ex, event_id, compat.fid("parallel"), "Completed", timeout=20)
    assert run["output"] == {"parts": ["a-done", "b-done", "c-done"],
                             "joined": "a-done+b-done+c-done"}
    counts = compat.counts()
    for part in "abc":
        assert counts[(run["run_id"], f"part-{part}")] == 1
    names = {s["name"] for s in ex.steps(run["run_id"])}
    assert {"part-a", "part-b", "part-c", "join"} <= names


def check_send_event_fans_out_to_a_second_function(compat: CompatStack) -> None:
    ex = compat.executor
    batch = unique()
    event_id = ex.send("compat/fanout", {"batch": batch})
    run = run_of(ex, event_id, compat.fid("fanout"), "Completed", timeout=20)
    ids = run["output"]["ids"]
    assert isinstance(ids, list) and len(ids) == 3
    outputs = sorted((run_of(ex, i, compat.fid("fan-target"), "Completed")["output"] for i in ids),
                     key=lambda o: o["i"])
    assert outputs == [{"batch": batch, "i": i, "square": i * i} for i in range(3)]
    # memoized: the send step is stored once, with the ids as its output (the Python SDK
    # stores the list, the JS SDK its `{ids}` result)
    assert step_named(ex, run["run_id"], "fan-out")["output"] in (ids, {"ids": ids})


def check_retry_after_error_delays_the_retry(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/retry-after", {})
    run = run_of(ex, event_id, compat.fid("retry-after"), "Completed", timeout=20)
    assert run["output"] == "ok on attempt 1"
    first, second = compat.times(run["run_id"], "flaky")
    # the executor's retry interval is 0.2 s; only Retry-After makes this wait 2 s
    assert second - first >= 1.8


def check_non_retriable_error_fails_at_once(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/non-retriable", {})
    run = run_of(ex, event_id, compat.fid("non-retriable"), "Failed", timeout=20)
    assert "card declined" in run["output"]["message"]
    stays(lambda: compat.counts()[(run["run_id"], "refuse")] == 1, 0.5,
          "a NonRetriableError step must run once although retries=3")


def check_on_failure_handler_runs_once_with_error_and_event(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/doomed", {"reactor": "r-7"})
    run = run_of(ex, event_id, compat.fid("doomed"), "Failed", timeout=20)
    run_id = run["run_id"]
    assert "reactor r-7 melted" in run["output"]["message"]
    assert compat.counts()[(run_id, "explode")] == 2  # retries=1: two attempts
    failed = failed_event_of(ex, run_id)
    handler = run_of(ex, failed["id"], compat.fid("doomed-failure"), "Completed", timeout=20)
    out = handler["output"]
    assert out["failed_run"] == run_id
    assert out["function_id"] == compat.fid("doomed")
    assert "reactor r-7 melted" in out["message"]
    assert out["original"]["name"] == "compat/doomed"
    assert out["original"]["data"] == {"reactor": "r-7"}
    assert out["trigger"] == "inngest/function.failed"
    assert compat.counts()[(run_id, "on-failure")] == 1


def check_cancel_event_cancels_a_sleeping_run(compat: CompatStack) -> None:
    ex = compat.executor
    me = unique()
    event_id = ex.send("compat/cancellable", {"id": me})
    run = run_of(ex, event_id, compat.fid("cancellable"), "Running")
    wait_step(ex, run["run_id"], "long-nap", "Sleeping")
    ex.send("compat/cancel", {"id": "not-this-one"})
    stays(lambda: ex.run(run["run_id"])["status"] == "Running", 0.5,
          "a cancel event for another id must not cancel the run")
    ex.send("compat/cancel", {"id": me})
    run_of(ex, event_id, compat.fid("cancellable"), "Cancelled", timeout=10)
    assert compat.counts().get((run["run_id"], "after")) is None


def check_large_state_goes_through_use_api(compat: CompatStack) -> None:
    ex = compat.executor
    marker = unique()
    event_id = ex.send("compat/big", {"marker": marker})
    run = run_of(ex, event_id, compat.fid("big-state"), "Completed", timeout=60)
    big = int(1.8 * 1024 * 1024)
    assert run["output"] == {"lengths": [big, big, big], "heads": ["xxx", "yyy", "zzz"],
                             "trigger": {"marker": marker}}
    run_id = run["run_id"]
    assert compat.counts()[(run_id, "summary")] == 1
    for letter in "xyz":
        assert len(step_named(ex, run_id, f"big-{letter}")["output"]) == big
    # the calls after the state passed 4 MiB carried use_api (top level and ctx), so the SDK
    # fetched /v0/runs/{id}/batch and /actions to rebuild the memos and finish correctly
    calls = compat.calls(run_id)
    assert any(c.startswith("use_api=true/true") for c in calls), calls
    assert any(c.startswith("use_api=false/false") for c in calls), calls


def check_invoke_gives_the_callees_error_and_times_out(compat: CompatStack) -> None:
    ex = compat.executor
    started = time.monotonic()
    event_id = ex.send("compat/invoke-errors", {})
    run = run_of(ex, event_id, compat.fid("invoke-errors"), "Completed", timeout=20)
    out = run["output"]
    assert isinstance(out["fragile"], dict), out
    assert "fragile broke: on purpose" in out["fragile"]["message"], out
    assert isinstance(out["slow"], dict), out
    assert "Timed out waiting for invoked function to complete" in out["slow"]["message"], out
    assert time.monotonic() - started < 15  # the 1 s invoke timeout, not the callee's 30 s sleep


def check_function_level_error_is_retried(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/flaky-fn", {})
    run = run_of(ex, event_id, compat.fid("flaky-fn"), "Completed", timeout=20)
    assert run["output"] == "ok on attempt 1"
    assert compat.counts()[(run["run_id"], "body")] == 2


def check_sleep_until_a_moment(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/sleep-until", {})
    run = run_of(ex, event_id, compat.fid("sleep-until"), "Completed", timeout=20)
    (before,) = compat.times(run["run_id"], "before")
    (after,) = compat.times(run["run_id"], "after")
    assert after - before >= 1.8
    assert isinstance(run["output"], str) and run["output"][:4].isdigit()


def check_parallel_group_with_a_sleep(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/parallel-mixed", {})
    run = run_of(ex, event_id, compat.fid("parallel-mixed"), ("Completed", "Failed"), timeout=20)
    assert run["status"] == "Completed", run
    assert run["output"] == {"results": ["quick-done", None]}
    (quick,) = compat.times(run["run_id"], "quick")
    (after,) = compat.times(run["run_id"], "after")
    assert after - quick >= 0.9



def check_debounce_starts_one_run_with_the_last_event(compat: CompatStack) -> None:
    ex = compat.executor
    group = unique()
    first = ex.send("compat/debounce", {"group": group, "n": 1})
    last = ex.send("compat/debounce", {"group": group, "n": 2})
    run = run_of(ex, last, compat.fid("debounced"), "Completed", timeout=20)
    assert run["output"] == {"n": 2, "events": 1}
    # one run for both events (listed under the first event too, or not at all)
    runs = [r for r in ex.runs_of(first) if r["function_id"] == compat.fid("debounced")]
    assert {r["run_id"] for r in runs} <= {run["run_id"]}, runs


def check_concurrency_limit_serialises_steps(compat: CompatStack) -> None:
    ex = compat.executor
    batches = [unique(), unique()]
    ids = [ex.send("compat/serial", {"batch": b}) for b in batches]
    for event_id in ids:
        assert run_of(ex, event_id, compat.fid("serial"), "Completed", timeout=20)["output"] == "worked"
    spans = sorted((compat.times(b, "start")[0], compat.times(b, "end")[0]) for b in batches)
    assert spans[0][1] <= spans[1][0], f"limit 1, yet the step bodies overlapped: {spans}"


def check_idempotency_key_starts_one_run(compat: CompatStack) -> None:
    ex = compat.executor
    key = unique()
    first = ex.send("compat/idempotent", {"key": key})
    run = run_of(ex, first, compat.fid("idempotent"), "Completed", timeout=20)
    assert run["output"] == key
    second = ex.send("compat/idempotent", {"key": key})
    # no second run: a Skipped one that names the run holding the key
    skipped = run_of(ex, second, compat.fid("idempotent"), "Skipped", timeout=10)
    assert run["run_id"] in skipped["output"]["reason"]


def check_batch_events_start_one_run_with_all_events(compat: CompatStack) -> None:
    ex = compat.executor
    ids = [ex.send("compat/batch", {"n": n}) for n in (1, 2, 3)]
    run = run_of(ex, ids[0], compat.fid("batched"), "Completed", timeout=20)
    assert run["output"] == {"ns": [1, 2, 3], "first": 1}



def check_throttle_spreads_run_starts(compat: CompatStack) -> None:
    ex = compat.executor
    batch = unique()
    ids = [ex.send("compat/throttle", {"batch": batch}) for _ in range(3)]
    for event_id in ids:
        run_of(ex, event_id, compat.fid("throttled"), "Completed", timeout=20)
    starts = sorted(compat.times(batch, "throttled-start"))
    assert len(starts) == 3
    assert starts[-1] - starts[0] >= 0.9, f"limit 1 per 2 s, yet 3 runs started at {starts}"


def check_rate_limit_drops_the_excess_event(compat: CompatStack) -> None:
    ex = compat.executor
    key = unique()
    first = ex.send("compat/rate-limit", {"key": key})
    assert run_of(ex, first, compat.fid("rate-limited"), "Completed")["output"] == "ran"
    second = ex.send("compat/rate-limit", {"key": key})
    # the excess event is dropped with a trace: a Skipped run that says why
    skipped = run_of(ex, second, compat.fid("rate-limited"), "Skipped", timeout=10)
    assert "rate limited" in skipped["output"]["reason"]


def check_singleton_skips_while_a_run_is_active(compat: CompatStack) -> None:
    ex = compat.executor
    key = unique()
    first = ex.send("compat/singleton", {"key": key})
    run_of(ex, first, compat.fid("singleton"), "Running")
    second = ex.send("compat/singleton", {"key": key})
    assert run_of(ex, first, compat.fid("singleton"), "Completed", timeout=20)["output"] == "held"
    skipped = run_of(ex, second, compat.fid("singleton"), "Skipped", timeout=10)
    assert "singleton" in skipped["output"]["reason"]


def check_finish_timeout_cancels_the_run(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/timed", {})
    run = run_of(ex, event_id, compat.fid("timed"), "Cancelled", timeout=15)
    assert compat.counts()[(run["run_id"], "before")] == 1
    assert compat.counts().get((run["run_id"], "after")) is None


def check_priority_expression_is_accepted(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/priority", {"boost": 60})
    assert run_of(ex, event_id, compat.fid("prioritized"), "Completed")["output"] == 60


# What the production-mode stacks run: signed calls, event keys, Bearer fetches (use_api).
PRODUCTION = [
    check_several_steps_run_once_each,
    check_send_event_fans_out_to_a_second_function,
    check_invoke_returns_the_other_functions_result,
    check_on_failure_handler_runs_once_with_error_and_event,
    check_large_state_goes_through_use_api,
]


def scenario_id(check: object) -> str:
    return str(getattr(check, "__name__", check)).removeprefix("check_")


# -- /v0/gql: the four query shapes, over runs of the official SDKs -------------------------
def check_gql_reads_a_completed_run_its_trigger_and_step_outputs(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/steps", {"n": 7})
    (run_id,) = gql.run_ids_of_event(ex, event_id)
    run = gql.run_when(ex, run_id, "COMPLETED")
    assert run["output"] == {"n": 7, "doubled": 14, "tags": ["a", "b"], "third": None}
    assert run["event"]["name"] == "compat/steps" and run["event"]["data"] == {"n": 7}
    assert [s["name"] for s in gql.step_spans(ex, run_id)] == ["first", "second", "third"]
    assert gql.step_output(ex, run_id, "second") == {"data": {"doubled": 14, "tags": ["a", "b"]}}
    assert gql.step_output(ex, run_id, "third") == {"data": None}


def check_gql_reads_a_failed_run_and_its_failed_step(compat: CompatStack) -> None:
    ex = compat.executor
    event_id = ex.send("compat/doomed", {"reactor": "r-9"})
    run_ids = gql.run_ids_of_event(ex, event_id)
    run = gql.run_when(ex, run_ids[0], "FAILED")
    assert "reactor r-9 melted" in run["output"]["message"]
    failed = gql.step_output(ex, run_ids[0], "explode")
    assert failed["data"] is None
    assert "reactor r-9 melted" in failed["error"]["message"]
    assert failed["error"]["name"]


def check_gql_refuses_a_field_it_does_not_serve(compat: CompatStack) -> None:
    ex = compat.executor
    answer = gql.post(ex, "query($id: String!) { run(runID: $id) { status bogusField } }",
                      {"id": "nope"})
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["errors"]
    assert "bogusField" in error["message"]
    unknown = gql.data(ex, gql.RUN.replace("runTrigger(runID: $runID) { payloads }", ""),
                       {"runID": "01NOSUCHRUN0000000000000000"})
    assert unknown == {"run": None}
