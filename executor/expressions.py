"""CEL expressions (trigger filters, wait/cancel matches, keys), through the maintained
`common-expression-language` package; compiled programs are cached by source text."""

from __future__ import annotations

import functools
from typing import Any

import cel


class ExpressionError(ValueError):
    """An expression does not compile."""


@functools.lru_cache(maxsize=4096)
def _program(source: str) -> Any:
    try:
        return cel.compile(source)
    except Exception as exc:  # the binding raises ValueError with the parser's message
        raise ExpressionError(str(exc).strip()) from None


def validate(source: str) -> None:
    _program(source)


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    """The expression's value; a missing field or a type error gives None."""
    try:
        return _program(source).execute(variables)
    except ExpressionError:
        raise
    except Exception:
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
