"""CEL expressions (trigger filters, wait/cancel matches, keys), through the maintained
`common-expression-language` package; compiled programs are cached by source text.

Expressions come from apps (registration, `wait_for_event`) and API callers (bulk
cancellation), and the library is native code: a 60 KB chain of `+` overflows its stack and
kills the process (SIGSEGV), and its `map`/`filter` take time quadratic in the list's
length. So, before the library sees an expression:

- its shape is bounded (`shape_problem`): length, bracket nesting plus ternaries, and the
  number of operations, so the syntax tree stays shallow. The limits sit far below what
  crashes: tests/unit/test_expression_limits.py compiles and evaluates the worst cases at
  each limit on an eight-times smaller stack than the executor's main thread;
- an expression with a loop (a comprehension macro: `all`, `exists`, `exists_one`, `map`,
  `filter`) runs in a child process with a time and memory budget (`expression_sandbox`),
  so a slow or crashing evaluation costs that child, never the executor. Loop-free
  expressions run in-process: their cost is linear in the expression and the event.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import cel

from . import expression_sandbox

log = logging.getLogger("inngest_like.executor")

MAX_CHARS = 4096
MAX_NESTING = 32  # bracket depth plus ternaries: each costs the parser ~8 KiB of stack
MAX_OPERATIONS = 256  # operators, member accesses, indexes and calls
COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter"})

_TWO_CHAR_OPERATORS = frozenset({"==", "!=", "<=", ">=", "&&", "||"})
_OPERATOR_CHARS = frozenset(".?!-+*/%<>=&|:")
_OPENERS, _CLOSERS = "([{", ")]}"


class ExpressionError(ValueError):
    """An expression does not compile, or is too large to be evaluated safely."""


@dataclasses.dataclass(frozen=True)
class Shape:
    problem: str | None  # why the expression is refused before the library sees it
    has_loop: bool  # uses a comprehension macro: evaluated in the sandbox


def string_end(source: str, start: int, raw: bool) -> int:
    """The index after the string literal opening at `start` (CEL: '', "", triple quotes)."""
    quote = source[start]
    delimiter = quote * 3 if source.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(source):
        if not raw and source[i] == "\\":
            i += 2
            continue
        if source.startswith(delimiter, i):
            return i + len(delimiter)
        if len(delimiter) == 1 and source[i] == "\n":
            break  # an unterminated single-line string: let the parser report it
        i += 1
    return len(source)


@functools.lru_cache(maxsize=4096)
def shape(source: str) -> Shape:
    """Bound an expression's size before parsing it (see the module docstring)."""
    if len(source) > MAX_CHARS:
        return Shape(f"longer than {MAX_CHARS} characters ({len(source)})", False)
    operations = ternaries = depth = deepest = 0
    open_calls: list[bool] = []  # per open bracket: is it a comprehension's argument list
    has_loop = False
    previous_word = ""
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char in "'\"":
            prefix = previous_word.lower() if previous_word.lower() in ("r", "b", "rb", "br") else ""
            i = string_end(source, i, "r" in prefix)
            previous_word = ""
            continue
        if source.startswith("//", i):
            newline = source.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if char.isalnum() or char == "_":
            end = i
            while end < n and (source[end].isalnum() or source[end] == "_"):
                end += 1
            previous_word = source[i:end]
            if previous_word == "in":
                operations += 1
            i = end
            continue
        if char in _OPENERS:
            loop = char == "(" and previous_word in COMPREHENSIONS and _after_dot(source, i)
            if loop and any(open_calls):
                return Shape("a comprehension (all, exists, exists_one, map, filter) inside "
                             "another one: its cost would grow with the square of the data",
                             True)
            has_loop = has_loop or loop
            open_calls.append(loop)
            depth += 1
            operations += 1
        elif char in _CLOSERS:
            if open_calls:
                open_calls.pop()
            depth = max(0, depth - 1)
        elif source[i:i + 2] in _TWO_CHAR_OPERATORS:
            operations += 1
            i += 1
        elif char in _OPERATOR_CHARS:
            operations += 1
            ternaries += char == "?"
        if not char.isspace():
            previous_word = ""
        deepest = max(deepest, depth + ternaries)
        if deepest > MAX_NESTING:
            return Shape(f"nested deeper than {MAX_NESTING} levels (brackets and ternaries)",
                         has_loop)
        if operations > MAX_OPERATIONS:
            return Shape(f"more than {MAX_OPERATIONS} operations", has_loop)
        i += 1
    return Shape(None, has_loop)


def _after_dot(source: str, paren: int) -> bool:
    """Is the word before `source[paren]` a method call (`x.all(`), as macros are?"""
    i = paren - 1
    while i >= 0 and source[i].isspace():
        i -= 1
    while i >= 0 and (source[i].isalnum() or source[i] == "_"):
        i -= 1
    while i >= 0 and source[i].isspace():
        i -= 1
    return i >= 0 and source[i] == "."


@functools.lru_cache(maxsize=4096)
def _program(source: str) -> Any:
    problem = shape(source).problem
    if problem:
        raise ExpressionError(problem)
    try:
        return cel.compile(source)
    except BaseException as exc:  # ValueError from the parser; a Rust panic is a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise ExpressionError(str(exc).strip()) from None


def validate(source: str) -> None:
    """Raise ExpressionError (with a message for the user) unless `source` is usable."""
    _program(source)


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """The expression's value; a missing field, a type error, an expression that is not
    valid (every entry point validates first) or one that ran out of budget gives None."""
    try:
        program = _program(source)
    except ExpressionError:
        return None
    if shape(source).has_loop:
        return expression_sandbox.evaluate(source, variables)
    try:
        return program.execute(variables)
    except BaseException as exc:  # a Rust panic surfaces as a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None


def matches(source: str | None, variables: dict[str, Any]) -> bool:
    """True when there is no expression, or it evaluates to true."""
    if not source:
        return True
    return evaluate(source, variables) is True


class EvaluationError(ValueError):
    """An expression failed on these values (a missing field, a type error) or gave null."""


def value_of(source: str, variables: dict[str, Any]) -> Any:
    """The expression's value, for keys: unlike `evaluate`, a failure is an error that says
    why, never a None that would silently become a shared key."""
    program = _program(source)
    try:
        value = program.execute(variables)
    except Exception as exc:
        raise EvaluationError(str(exc).strip() or exc.__class__.__name__) from None
    if value is None:
        raise EvaluationError("it evaluated to null")
    return value
