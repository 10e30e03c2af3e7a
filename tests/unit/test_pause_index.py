"""Interpolating the trigger into a pause's expression, and the bucket a pause is stored in
(executor/pause_index.py). The index must never lose a match: whatever an event, if the
original expression matched it, the event reads the pause's bucket and the rewritten
expression matches it too."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from executor import expressions, keys, pause_index
from executor.expression_ast import Unparsed, parse

TRIGGER: dict[str, Any] = {
    "name": "shop/order.placed", "id": "e-1", "ts": 1,
    "data": {"order_id": "o-17", "n": -5, "f": 2.5, "whole": 5.0, "flag": True, "none": None,
             "items": [1, 2, 3], "nested": {"k": "v"}, "text": 'a"b\\c\nd é \u0001'},
    "user": {},
}


def _matches(source: str, trigger: dict[str, Any] | None, incoming: dict[str, Any]) -> bool:
    return expressions.matches(source, {"event": trigger or {}, "async": incoming})


@pytest.mark.parametrize(("source", "expected"), [
    ("async.data.order_id == event.data.order_id", 'async.data.order_id == "o-17"'),
    ("event.data.order_id == async.data.order_id", '"o-17" == async.data.order_id'),
    ("async.data.n == event.data.n", "async.data.n == (-5)"),
    ("async.data.x == event.data.nested", 'async.data.x == {"k":"v"}'),
    ('async.data.x == event.data["items"][1]', "async.data.x == 2"),
    ("has(event.data.order_id) && async.data.a == 1", "true && async.data.a == 1"),
    ("has(event.data.nope) || async.data.a == 1", "false || async.data.a == 1"),
    ("event.data.items.exists(i, i == async.data.v)", "[1,2,3].exists(i, i == async.data.v)"),
    ("async.data.a == 1", "async.data.a == 1"),  # nothing to write in
    ("async.data.x == event.data.nope",  # the longest prefix the trigger has: fails alike
     'async.data.x == {"order_id":"o-17","n":-5,"f":2.5,"whole":5.0,"flag":true,'
     '"none":null,"items":[1,2,3],"nested":{"k":"v"},"text":"a\\"b\\\\c\\nd é \\u0001"}.nope'),
])
def test_interpolation_writes_the_trigger_values_in(source: str, expected: str) -> None:
    assert pause_index.interpolate(source, TRIGGER) == expected


@pytest.mark.parametrize("source", [
    "async.data.items.exists(event, event == 1)",  # `event` is the loop's variable there
    "async.data.v == event.data.big",  # past 64 bits: no literal of that value
    "async.data.v in event.data.many",  # the rewritten expression would pass the limits
])
def test_what_cannot_be_interpolated_is_kept(source: str) -> None:
    trigger = {"data": {"big": 2**70, "many": list(range(3000))}}
    assert pause_index.interpolate(source, trigger) is None
    _, expr, copy, path = pause_index.place("x", source, trigger)
    assert (expr, copy, path) == (source, trigger, None)  # evaluated as pauses always were


EXPRESSIONS = [
    "async.data.order_id == event.data.order_id",
    "event.data.order_id == async.data.order_id && async.data.ok == true",
    "async.data.n == event.data.n",
    "async.data.v == event.data.whole",
    "async.data.v == event.data.f || async.data.v == event.data.n",
    "async.data.v != event.data.order_id",
    "async.data.v == event.data.none",
    "async.data.v == event.data.nope",
    "async.data.v in event.data.items",
    'async.data.text == event.data.text && event.data.flag',
    "has(event.data.nested) && async.data.v == event.data.nested.k",
    "event.data.items.size() > 2 && async.data.v == 5",
    "async.data.v > event.data.n",
    "size(event.data.order_id) == 4 ? async.data.v == 1 : false",
]
VALUES = [None, 5, 5.0, "5", True, 1, -5, 2.5, "o-17", "v", [1], {"k": "v"}, 'a"b\\c\nd é \u0001']


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_the_index_never_loses_a_match(source: str) -> None:
    address, expr, copy, _ = pause_index.place("shop/cancel", source, TRIGGER)
    key = keys.pause_hash(address, 0)
    assert copy is None and expr is not None and "event" not in expr
    paths = sorted(pause_index.candidate_paths(source))
    for value, ok in itertools.product([*VALUES, "absent"], [True, False, "absent"]):
        data: dict[str, Any] = {}
        if value != "absent":
            data["v"] = value
            data["order_id"] = value
            data["n"] = value
            data["text"] = value
        if ok != "absent":
            data["ok"] = ok
        incoming = {"name": "shop/cancel", "data": data, "id": "", "ts": 2, "user": {}}
        before = _matches(source, TRIGGER, incoming)
        assert _matches(expr, None, incoming) == before, (value, ok)
        if before:  # the event reads the bucket the pause is in (or the unindexed pauses)
            read = {keys.pauses("shop/cancel", 0),
                    *pause_index.buckets_of("shop/cancel", incoming, paths, 0)}
            assert key in read, (value, ok)


@pytest.mark.parametrize(("source", "path", "value"), [
    ('async.data.id == "o-1"', "data.id", '"o-1"'),
    ('"o-1" == async.data.id', "data.id", '"o-1"'),
    ('async.name != "x" && (async.data.n == 5.0 && async.data.m > 1)', "data.n", "5"),
    ('async["data"]["id"] == -3', "data.id", "-3"),
    ("async.user.admin == true", "user.admin", "true"),
    ("async.data.x == null", "data.x", "null"),
])
def test_equalities_with_a_literal_are_indexed(source: str, path: str, value: str) -> None:
    assert pause_index.index_of(source) == (path, value)


@pytest.mark.parametrize("source", [
    None, "", "true",
    'async.data.id != "o-1"',
    'async.data.id == "o-1" || async.data.id == "o-2"',
    "async.data.id == event.data.id",  # not interpolated: no literal to bucket on
    'async.data.id == {"k":"v"}.nope',  # a missing trigger field, after interpolation
    "async.data.id == [1]",
    "async.data.id == async.data.other",
    'async.data.id > 3',
    'async.data.id == "a" ? true : false',
    '!(async.data.id == "a")',
    'async.data["a.b"] == 1',  # a field name with a dot: not a plain path
    'async.data.items.exists(async, async == 1)',
])
def test_other_expressions_are_not_indexed(source: str | None) -> None:
    assert pause_index.index_of(source) is None


def test_equal_values_share_a_bucket_and_others_do_not() -> None:
    assert pause_index.bucket_value(5) == pause_index.bucket_value(5.0) == "5"
    assert len({pause_index.bucket_value(v) for v in (5, "5", True, 1.5, None)}) == 5
    assert pause_index.bucket_value(1) != pause_index.bucket_value(True)
    for unindexable in ([1], {"a": 1}, float("nan")):
        assert pause_index.bucket_value(unindexable) is None
    event = {"data": {"id": "o-1", "list": [1], "deep": {"x": 2}}}
    assert pause_index.value_at(event, "data.id") == '"o-1"'
    assert pause_index.value_at(event, "data.deep.x") == "2"
    for path in ("data.missing", "data.id.x", "data.list"):
        assert pause_index.value_at(event, path) is None
    assert pause_index.buckets_of("n", event, ["data.id", "data.missing"], 0) == [
        keys.pause_bucket("n", "data.id", '"o-1"', 0)]


def test_bucket_keys_are_unambiguous_and_bounded() -> None:
    assert keys.pause_bucket("a:b", "c", "1", 0) != keys.pause_bucket("a", "b:c", "1", 0)
    long = keys.pause_bucket("n", "data.blob", '"' + "x" * 10_000 + '"', 0)
    assert len(long) < 120 and long != keys.pause_bucket("n", "data.blob", '"' + "x" * 9_999 + '"', 0)


def test_the_parser_reads_what_the_library_accepts() -> None:
    for source in [*EXPRESSIONS, "a.b(1, [2, 3], {'k': 4})[0] + -x * (y % 2) / 3 - .5 >= 1e3",
                   "x in [1u, 0x1F, b'\\x00', r'a\\b', '''t''']", "Msg{event: 1}.event",
                   "a ? b : c ? d : e // a comment"]:
        if "Msg" not in source:  # the library has no message types to build
            expressions.validate(source)
        parse(source)
    with pytest.raises(Unparsed):
        parse("a.?b")  # optional field syntax: not handled, so not rewritten
    assert pause_index.interpolate("Msg{event: 1} == async.x", TRIGGER) == \
        "Msg{event: 1} == async.x"
