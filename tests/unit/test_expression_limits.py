"""Issue 10.1: no expression can take the executor down. Shapes are bounded before the native
CEL library sees them, the bounds are proven far from what crashes it (the worst case at
every limit runs on a stack eight times smaller than the executor's main thread, in a child
process so a crash fails the test instead of killing pytest), and loops run in a sandbox
process with a time budget."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from executor import expression_sandbox, expressions
from executor.expressions import MAX_CHARS, MAX_NESTING, MAX_OPERATIONS

from ..procs import ROOT

CRASHER = "1" + "+1" * 30000  # the report: 60 KB, SIGSEGV inside the library


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_reported_expression_crashes_the_library_itself() -> None:
    # what the limits protect against: without them this is the executor's exit status
    done = run_child(f"import cel; cel.compile({CRASHER!r})")
    assert done.returncode < 0, (done.returncode, done.stderr[-500:])


def test_the_reported_expression_is_refused_with_a_reason() -> None:
    with pytest.raises(expressions.ExpressionError, match="longer than 4096 characters"):
        expressions.validate(CRASHER)
    assert expressions.evaluate(CRASHER, {}) is None
    assert expressions.matches(CRASHER, {}) is False


def chain(operations: int) -> str:
    return "1" + "+1" * operations


@pytest.mark.parametrize(("source", "words"), [
    ("1" * (MAX_CHARS + 1), "longer than"),
    (chain(MAX_OPERATIONS + 1), f"more than {MAX_OPERATIONS} operations"),
    ("a" + ".b" * (MAX_OPERATIONS + 1), "operations"),
    ("(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1), f"deeper than {MAX_NESTING}"),
    ("[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1), "deeper than"),
    ("true ? 1 : " * (MAX_NESTING + 1) + "1", "deeper than"),
    ("e.l.all(x, x.m.exists(y, y == 1))", "comprehension"),
    ("e.l.map(x, e.l.filter(y, y == x))", "comprehension"),
])
def test_over_a_limit_is_refused(source: str, words: str) -> None:
    with pytest.raises(expressions.ExpressionError, match=words):
        expressions.validate(source)


@pytest.mark.parametrize("source", [
    chain(MAX_OPERATIONS),
    "(" * MAX_NESTING + "1" + ")" * MAX_NESTING,
    "event.data.a == async.data.a && event.data.b != 'x(y[z' && size(event.data.c) > 2",
    "event.data.items.exists(i, i.id == async.data.id) && event.data.l.all(x, x > 0)",
    "'((((((((((((((((((((((((((((((((((((((((' == r'[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['",
])
def test_at_a_limit_is_accepted(source: str) -> None:
    expressions.validate(source)


def test_worst_cases_at_every_limit_run_on_a_small_stack() -> None:
    """Each shape the library parses recursively, as big as the limits allow, compiled and
    evaluated in a thread with 1 MiB of stack (the executor's main thread has 8 MiB)."""
    ops, nest = MAX_OPERATIONS, MAX_NESTING
    sources = [
        chain(ops),
        "event" + ".a" * ops,
        "event" + "[0]" * (nest - 1),
        "event" + "[0]" * (ops // 2),
        "-" * ops + "1",
        "!" * ops + "true",
        "(" * nest + "1" + ")" * nest,
        "(" * (nest - 1) + chain(ops - nest) + ")" * (nest - 1),
        "[" * nest + "]" * nest,
        "{1:" * (nest - 1) + "1" + "}" * (nest - 1),
        "size(" * nest + "'a'" + ")" * nest,
        "true ? 1 : " * nest + "1",
        "true" + " && true" * ops,
        "event.data.l.exists(x, " + chain(ops - 8) + " == x)",
    ]
    for source in sources:
        expressions.validate(source)  # every one of them is within the limits
    deep: dict[str, object] = {}
    node = deep
    for _ in range(100):  # request bodies are refused beyond 100 levels (issue 10.8)
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    done = run_child(f"""
        import threading, cel
        sources = {sources!r}
        variables = {{"event": {{"data": {{"l": [1, 2], "deep": {deep!r}}}}}}}
        failures = []
        def work():
            for source in sources + ["event.data.deep", "event.data.deep == event.data.deep"]:
                program = cel.compile(source)
                try:
                    program.execute(variables)
                except Exception:
                    pass  # a type error is fine: only a crash matters here
            print("survived", len(sources) + 2)
        threading.stack_size(1024 * 1024)
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    """)
    assert done.returncode == 0, (done.returncode, done.stderr[-800:])
    assert f"survived {len(sources) + 2}" in done.stdout


def test_a_slow_loop_is_cut_at_its_budget_and_the_next_call_works() -> None:
    sandbox = expression_sandbox.Sandbox(timeout_s=1.0)
    try:
        slow = "event.l.map(x, x + 1).size() > 0"  # quadratic in the library: minutes here
        started = time.monotonic()
        with pytest.raises(expression_sandbox.SandboxError, match="longer than 1s"):
            sandbox.evaluate(slow, {"event": {"l": list(range(100_000))}})
        assert time.monotonic() - started < 10
        assert sandbox.evaluate(slow, {"event": {"l": [1, 2, 3]}}) is True
        assert sandbox.started == 2  # the overrun child was killed and replaced
        assert sandbox.evaluate("event.l.exists(x, x.y == 1)", {"event": {"l": [1]}}) is None
    finally:
        sandbox.close()


def test_a_dead_sandbox_is_replaced() -> None:
    sandbox = expression_sandbox.Sandbox()
    try:
        assert sandbox.evaluate("event.l.exists(x, x == 2)", {"event": {"l": [1, 2]}}) is True
        assert sandbox._child is not None
        sandbox._child.kill()
        sandbox._child.wait()
        assert sandbox.evaluate("event.l.exists(x, x == 3)", {"event": {"l": [1, 2]}}) is False
        assert sandbox.started == 2
    finally:
        sandbox.close()


def test_loops_go_to_the_sandbox_and_plain_expressions_do_not() -> None:
    assert expressions.shape("event.data.l.exists(x, x == 1)").has_loop
    assert not expressions.shape("event.data.exists == 1 && has(event.data.map)").has_loop
    assert expressions.matches("event.data.l.exists(x, x == 2)", {"event": {"data": {"l": [2]}}})
