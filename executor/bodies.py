"""JSON from requests, with a nesting limit.

orjson reads JSON nested up to 1,024 levels but writes at most 254, and everything the
executor accepts is written again, wrapped in more levels (stored events, call requests,
memos). So a body nested a few hundred levels deep used to be read, then fail to be written:
a 500 after part of the work. Refusing it up front, with the field named, is the only place
the error is cheap and clear. 100 levels leave room for every wrapper and for the CEL
library, which walks values recursively (tests/unit/test_expression_limits.py).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

MAX_DEPTH = 100


class BodyError(ValueError):
    """A body is not usable JSON; the message names the field and the problem."""


# orjson.dumps refuses values nested deeper than this (pinned by tests/unit/test_bodies.py)
ORJSON_WRITE_DEPTH = 254


class _Wrapper(threading.local):
    """Arrays nested `ORJSON_WRITE_DEPTH - MAX_DEPTH` deep, built once per thread, with a
    hole at the bottom for the value to measure: wrapping each value afresh allocated 154
    lists per request, and the garbage collector passes those allocations set off (whose
    cost falls on whoever allocates) made this the executor's costliest line on the
    checkpoint path (bench/hotpath.py)."""

    def __init__(self) -> None:
        self.hole: list[Any] = [None]
        self.outer: list[Any] = self.hole
        for _ in range(ORJSON_WRITE_DEPTH - MAX_DEPTH - 1):
            self.outer = [self.outer]


_WRAPPER = _Wrapper()


def depth_exceeds(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Is `value` (as parsed from JSON) nested deeper than `limit` levels?

    Measured by orjson itself, at C speed: wrapped in enough arrays that a value deeper
    than `limit` passes orjson's own write limit, and written. Walking the value in Python
    instead costs ~40 times more (20 ms for a 512 KiB event of small objects)."""
    if not isinstance(value, dict | list):
        return False
    if limit == MAX_DEPTH:  # the usual limit: the prebuilt wrapper (orjson runs no Python
        wrapper = _WRAPPER  # code while it writes, so nothing else can use the hole meanwhile)
        wrapper.hole[0] = value
        wrapped: Any = wrapper.outer
    else:
        wrapped = value
        for _ in range(ORJSON_WRITE_DEPTH - limit):
            wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" in str(exc):
            return True
        raise
    finally:
        _WRAPPER.hole[0] = None  # do not keep the value alive
    return False


def loads(raw: bytes | str, field: str = "body") -> Any:
    """Parse `raw`; BodyError names `field` when it is not JSON or nested too deep."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "depth" in message or "recursion" in message:
            raise BodyError(f"{field}: JSON nested deeper than {MAX_DEPTH} levels") from None
        raise BodyError(f"{field}: malformed JSON: {message}") from None
    if _openers(raw) > MAX_DEPTH and depth_exceeds(value):
        raise BodyError(f"{field}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _openers(raw: bytes | str) -> int:
    """How many `[` and `{` the text holds: a bound on how deep its value nests (brackets in
    strings only count more), found at memchr speed, so most bodies need no depth check."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")
