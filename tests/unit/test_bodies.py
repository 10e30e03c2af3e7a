"""Issue 10.8: JSON nested deeper than the limit is refused with the field named, by a
check that agrees with a plain walk of the value at and around the limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from executor import bodies
from executor.bodies import MAX_DEPTH


def nested(depth: int, leaf: Any = 1, kind: str = "dict") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value} if kind == "dict" else [value]
    return value


def walked_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((walked_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((walked_depth(v) for v in value), default=0)
    return 0


def test_orjson_write_limit_is_what_the_check_relies_on() -> None:
    orjson.dumps(nested(bodies.ORJSON_WRITE_DEPTH, kind="list"))
    with pytest.raises(orjson.JSONEncodeError, match="Recursion limit"):
        orjson.dumps(nested(bodies.ORJSON_WRITE_DEPTH + 1, kind="list"))


@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("depth", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300])
def test_depth_check_agrees_with_a_walk(kind: str, depth: int) -> None:
    value = nested(depth, kind=kind)
    assert walked_depth(value) == depth
    assert bodies.depth_exceeds(value) == (depth > MAX_DEPTH)


def test_wide_values_are_not_deep() -> None:
    wide = {"items": [{"id": i, "tags": ["a", "b"]} for i in range(10_000)]}
    assert not bodies.depth_exceeds(wide)
    assert not bodies.depth_exceeds("text") and not bodies.depth_exceeds(None)


@pytest.mark.parametrize("raw", [
    b"[" * 300 + b"]" * 300,  # read by orjson, too deep to write again
    b"[" * 2000 + b"]" * 2000,  # deeper than orjson reads at all
    orjson.dumps(nested(MAX_DEPTH + 1)),
])
def test_loads_names_the_field(raw: bytes) -> None:
    with pytest.raises(bodies.BodyError, match=f"^data: JSON nested deeper than {MAX_DEPTH}"):
        bodies.loads(raw, "data")


def test_loads_reports_malformed_json() -> None:
    with pytest.raises(bodies.BodyError, match=r"^body: malformed JSON"):
        bodies.loads(b'{"a": ')
    assert bodies.loads(orjson.dumps(nested(MAX_DEPTH))) == nested(MAX_DEPTH)
