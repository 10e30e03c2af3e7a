"""The runs search language: `field = value` clauses over the trigger event, joined by `and`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

_CLAUSE = re.compile(
    r"^\s*(?:event\.)?([A-Za-z_$][\w$-]*(?:\.[\w$-]+)*)\s*(==|=|!=|>=|<=|>|<)\s*(.+?)\s*$")
_AND = re.compile(r"\s+(?:and|AND|&&)\s+")
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str
    value: Any
    raw: str

    def matches(self, event: Any) -> bool:
        found = _lookup(event, self.path)
        if self.op == "!=":
            return found is _MISSING or not _equal(found, self.value, self.raw)
        if found is _MISSING:
            return False
        if self.op == "=":
            return _equal(found, self.value, self.raw)
        return _compare(found, self.op, self.value)


@dataclasses.dataclass(frozen=True)
class Search:
    """`data.user_id = 42` (clauses joined by `and`; `=`, `!=`, `<`, `<=`, `>`, `>=`;
    paths relative to the event, `event.` optional; values are JSON, or bare text) or free
    text, matched case-insensitively against the event's JSON and its string values."""

    clauses: tuple[Clause, ...] = ()
    text: str = ""

    def matches(self, event: Any, raw: bytes | str | None = None) -> bool:
        if self.clauses:
            return all(c.matches(event) for c in self.clauses)
        if not self.text:
            return True
        whole = (raw.decode(errors="replace") if isinstance(raw, bytes)
                 else raw if raw is not None else orjson.dumps(event).decode())
        if self.text in whole.lower():
            return True
        return any(self.text in s.lower() for s in _strings(event))

    def describe(self) -> str:
        if self.clauses:
            return " and ".join(f"{'.'.join(c.path)} {c.op} {c.raw}" for c in self.clauses)
        return self.text


def parse_search(text: str | None) -> Search | None:
    text = (text or "").strip()
    if not text:
        return None
    clauses = []
    for part in _AND.split(text):
        m = _CLAUSE.match(part)
        if not m:
            return Search(text=text.lower())
        raw = m.group(3).strip()
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw[1:-1] if len(raw) > 1 and raw[0] == raw[-1] == "'" else raw
        clauses.append(Clause(tuple(m.group(1).split(".")), "=" if m.group(2) == "==" else
                              m.group(2), value, raw))
    return Search(clauses=tuple(clauses))


def _lookup(value: Any, path: Sequence[str]) -> Any:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _equal(found: Any, expected: Any, raw: str) -> bool:
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected or _scalar_text(found) == raw
    return bool(found == expected) or _scalar_text(found) == raw or _scalar_text(found) == str(
        expected)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(found: Any, op: str, expected: Any) -> bool:
    left, right = _number(found), _number(expected)
    a: Any
    b: Any
    if left is not None and right is not None:
        a, b = left, right
    elif isinstance(found, str) and isinstance(expected, str):
        a, b = found, expected
    else:
        return False
    return bool({">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op])


def _strings(value: Any) -> Iterable[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
