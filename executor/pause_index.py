"""How a pause is stored so that an event reads only the pauses it may match.

**Interpolation.** A pause's expression compares the incoming event (`async`) with the run's
trigger (`event`). The trigger is known when the pause is made, so its values are written
into the expression then (`async.data.id == event.data.id` becomes `async.data.id ==
"o-17"`) and the pause keeps no copy of the trigger. Only a chain of fields and literal
indexes rooted at `event` is replaced, by the value it has in the trigger (or by the value
of its longest prefix that exists: `event.data.missing` becomes `{...}.missing`, which fails
just as the original did); `has(event.a.b)` becomes `true` or `false`. Whatever cannot be
rewritten so (a comprehension binding a variable named `event`, syntax the parser does not
know, a result the limits refuse) keeps the original expression and a copy of the trigger,
as every pause did before.

**Index.** An expression that holds only if `async.<path> == <literal>` (the whole
expression, or one operand of a top-level `&&`), with a scalar literal, is stored in the
bucket of (event name, path, literal): an event whose value at that path differs cannot
match it. The paths in use per event name are kept in a set, so an event reads, per path,
the one bucket of its own value, plus the pauses that have no such equality.

**Addresses.** Queue items (a pause's timeout, a wait's look-back) and a run's listeners set
name a pause by its id and its address (`PauseRef`), never by its hash's key: keys.py builds
the key from the address, and the scripts get it in KEYS.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import orjson

from . import expressions, keys
from .expression_ast import Node, Unparsed, literal_value, parse

_INT64 = 1 << 63
_MISSING = object()


class _Keep(Exception):
    """The expression cannot be interpolated: keep it and a copy of the trigger."""


# a path set's member that says "pauses of this name not indexed may exist" (in a store of
# several shards, where every shard's path set of a name is marked: pauses.mark_waited)
UNINDEXED = "*"

INVOKE: tuple[str, ...] = ("c",)  # the address of every invoke pause (by correlation id)


def unindexed(event_name: str) -> tuple[str, ...]:
    """The address of the pauses of `event_name` that are in no bucket."""
    return ("e", event_name)


def bucket(event_name: str, path: str, value: str) -> tuple[str, ...]:
    """The address of a bucket: the pauses of `event_name` that need the event's field at
    `path` to have the bucket value `value`."""
    return ("b", event_name, path, value)


@dataclasses.dataclass(frozen=True)
class PauseRef:
    """A pause as queue items and its run's listeners set name it: its id and its address
    (see keys.pause_hash). Its hash is in its id's shard, which is its run's (a pause id
    starts with its run id). `legacy_key`: the hash's key itself, how items and members
    written before addresses named a pause: read, so that an upgrade strands no pause, and
    never written."""

    id: str
    address: tuple[str, ...] = ()
    legacy_key: str = ""

    @property
    def key(self) -> str:
        return self.legacy_key or keys.pause_hash(self.address, keys.shard_of(self.id))

    @property
    def member(self) -> str:
        """Its member in its run's listeners set: the JSON array of its id and address."""
        if self.legacy_key:
            return self.legacy_member
        return orjson.dumps([self.id, *self.address]).decode()

    @property
    def legacy_member(self) -> str:
        """The member a pause stored before addresses has in its run's listeners set
        (resume.lua removes either: a pause found by its address may be that old)."""
        return f"{self.key}|{self.id}"

    @property
    def event_name(self) -> str | None:
        """The event a pause at this address waits for (None for an invoke, or unknown)."""
        return self.address[1] if self.address[:1] in (("e",), ("b",)) else None

    @classmethod
    def of_member(cls, member: bytes | str) -> PauseRef:
        """The pause a listeners set's member names, in either form."""
        text = member.decode() if isinstance(member, bytes) else member
        if text.startswith("["):
            pause_id, *address = orjson.loads(text)
            return cls(str(pause_id), tuple(str(part) for part in address))
        # `<key>|<id>`: split at the last '|', as the key holds an event name that may
        # contain one (a key never starts with '[': its prefix is `il:`)
        key, _, pause_id = text.rpartition("|")
        return cls(pause_id, legacy_key=key)

    @classmethod
    def of_item(cls, pause_id: str, address: list[str], pause_key: str) -> PauseRef:
        """The pause a queue item's payload names: by address, or (written before
        addresses) by key."""
        return cls(pause_id, tuple(address), "" if address else pause_key)


# -- interpolation ---------------------------------------------------------------------------
def interpolate(source: str, trigger: dict[str, Any]) -> str | None:
    """`source` with the trigger's values in place of `event.…`; None when it cannot be
    rewritten (the pause then keeps `source` and the trigger)."""
    if "event" not in source:
        return source
    try:
        edits: list[tuple[int, int, str]] = []
        _interpolate(source, parse(source), trigger, edits)
    except (Unparsed, _Keep):
        return None
    out, last = [], 0
    for start, end, text in sorted(edits):
        out += [source[last:start], text]
        last = end
    out.append(source[last:])
    rewritten = "".join(out)
    try:
        expressions.validate(rewritten)  # a large value can take it past the limits
    except expressions.ExpressionError:
        return None
    return rewritten


def _interpolate(source: str, node: Node, trigger: dict[str, Any],
                 edits: list[tuple[int, int, str]]) -> None:
    chain = _event_chain(source, node)
    if chain is not None:
        # the longest prefix the trigger has: what follows it fails now as it would have
        value: Any = trigger
        reached = chain[0][0]
        for link, key in chain[1:]:
            found = _child(value, key)
            if found is _MISSING:
                break
            value, reached = found, link
        edits.append((reached.start, reached.end, _literal(value)))
        return
    if node.kind == "call" and not node.has_target and node.value == "has" \
            and len(node.children) == 1 and node.children[0].kind == "select":
        field = _event_chain(source, node.children[0])
        if field is not None:  # has(event.a.b): decided by the trigger, now
            holder: Any = trigger
            for _, key in field[1:-1]:
                holder = _child(holder, key)
            if not isinstance(holder, dict):
                raise _Keep("has() on something that is not a map")
            edits.append((node.start, node.end,
                          "true" if field[-1][1] in holder else "false"))
            return
    if node.kind == "call" and node.has_target and node.value in expressions.COMPREHENSIONS \
            and len(node.children) > 1 and node.children[1].kind == "ident" \
            and node.children[1].value == "event":
        raise _Keep("a comprehension binds a variable named event")
    for child in node.children:
        _interpolate(source, child, trigger, edits)


def _event_chain(source: str, node: Node) -> list[tuple[Node, Any]] | None:
    """[(node, key), ...] from the identifier `event` out to `node` when `node` is a chain
    of field selections and literal indexes rooted at it; None otherwise."""
    if node.kind == "ident":
        return [(node, None)] if node.value == "event" else None
    if node.kind not in ("select", "index"):
        return None
    inner = _event_chain(source, node.children[0])
    if inner is None:
        return None
    if node.kind == "select":
        return [*inner, (node, node.value)]
    try:
        key = literal_value(source, node.children[1])
    except Unparsed:
        return None
    if not isinstance(key, str | int) or isinstance(key, bool):
        return None
    return [*inner, (node, key)]


def _child(value: Any, key: Any) -> Any:
    if isinstance(value, dict) and isinstance(key, str) and key in value:
        return value[key]
    if isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
        return value[key]
    return _MISSING


def _literal(value: Any) -> str:
    """A JSON value as CEL source: JSON's literals are CEL's, but for integers past 64 bits
    (kept as they are: `_Keep`) and a leading minus (parenthesized, to bind as one atom)."""
    _check_ints(value)
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise _Keep(str(exc)) from None
    return f"({text})" if text.startswith("-") else text


def _check_ints(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if not -_INT64 < value < _INT64:
            raise _Keep("an integer beyond 64 bits")
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)


# -- the index -------------------------------------------------------------------------------
def bucket_value(value: Any) -> str | None:
    """The text naming the bucket of a scalar: equal values in CEL's sense (`5 == 5.0`)
    get the same text; None for a value no bucket holds (a list, a map, NaN)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return None


def _async_path(source: str, node: Node) -> str | None:
    """`data.order_id` for `async.data.order_id` (or `async.data["order_id"]`), when every
    field is a plain name (so a path and a value never read as another path and value)."""
    parts: list[str] = []
    while node.kind in ("select", "index"):
        if node.kind == "select":
            part: Any = node.value
        else:
            try:
                part = literal_value(source, node.children[1])
            except Unparsed:
                return None
        if not isinstance(part, str) or not part or not keys.PATH_PART.fullmatch(part):
            return None
        parts.append(part)
        node = node.children[0]
    if node.kind != "ident" or node.value != "async" or not parts:
        return None
    return ".".join(reversed(parts))


def _conjuncts(node: Node) -> list[Node]:
    if node.kind == "binary" and node.value == "&&":
        return _conjuncts(node.children[0]) + _conjuncts(node.children[1])
    return [node]


def index_of(source: str | None) -> tuple[str, str] | None:
    """(path, bucket value) of the first `async.<path> == <scalar literal>` the expression
    needs to hold; None when it has none (no expression, `||`, `!=`, an `event.` left)."""
    if not source:
        return None
    try:
        tree = parse(source)
    except Unparsed:
        return None
    for path, other in _async_equalities(source, tree):
        try:
            value = bucket_value(literal_value(source, other))
        except Unparsed:
            continue
        if value is not None:
            return path, value
    return None


def candidate_paths(source: str | None) -> set[str]:
    """The paths an expression may be indexed on once interpolated, whatever the trigger:
    those of its top-level equalities between `async.<path>` and a literal or `event.…`.
    (A cancel listener is stored by the ingest script; its paths are registered when the
    function is loaded, before any run of it can start.)"""
    if not source:
        return set()
    try:
        tree = parse(source)
    except Unparsed:
        return set()
    return {path for path, other in _async_equalities(source, tree)
            if _event_chain(source, other) is not None or other.kind in ("lit", "unary")}


def _async_equalities(source: str, tree: Node) -> Iterator[tuple[str, Node]]:
    """(path, the other side) of each top-level `async.<path> == <other>`, either way round
    (the conjuncts of a top-level `&&` included)."""
    for conjunct in _conjuncts(tree):
        if conjunct.kind != "binary" or conjunct.value != "==":
            continue
        left, right = conjunct.children
        for field, other in ((left, right), (right, left)):
            path = _async_path(source, field)
            if path is not None:
                yield path, other


def value_at(event: dict[str, Any], path: str) -> str | None:
    """The bucket value of the event's field at `path`; None when it has none there (a
    missing field fails the equality, so no bucket of that path can match)."""
    value: Any = event
    for part in path.split("."):
        value = _child(value, part)
        if value is _MISSING:
            return None
    return bucket_value(value)


def place(event_name: str, expression: str | None, trigger: dict[str, Any],
          ) -> tuple[tuple[str, ...], str | None, dict[str, Any] | None, str | None]:
    """Where a new pause for `event_name` goes (in its run's shard): (its address, the
    expression it keeps, the trigger copy it keeps (None: interpolated), the indexed path
    (None: unindexed))."""
    if not expression:
        return unindexed(event_name), None, None, None
    rewritten = interpolate(expression, trigger)
    if rewritten is None:
        return unindexed(event_name), expression, trigger, None
    found = index_of(rewritten)
    if found is None:
        return unindexed(event_name), rewritten, None, None
    path, value = found
    return bucket(event_name, path, value), rewritten, None, path


def bucket_addresses(event_name: str, event: dict[str, Any],
                     paths: list[str]) -> list[tuple[str, ...]]:
    """The buckets an event of `event_name` may find matching pauses in, one per indexed
    path in `paths` where it has a scalar value."""
    out = []
    for path in paths:
        value = value_at(event, path)
        if value is not None:
            out.append(bucket(event_name, path, value))
    return out


def buckets_of(event_name: str, event: dict[str, Any], paths: list[str],
               shard: int) -> list[str]:
    """The bucket keys of `shard` an event of `event_name` may find matching pauses in, one
    per indexed path (of that shard's) where it has a scalar value."""
    return [keys.pause_hash(address, shard)
            for address in bucket_addresses(event_name, event, paths)]
