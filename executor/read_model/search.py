"""The search language of the runs and events lists, answered from the indexes of
`executor/indexes.py` (never by reading runs one by one).

    data.user_id = 42                      a leaf of the trigger event (`event.` optional)
    output.summary.tokens > 100            the run's output (numbers: < <= > >=)
    error.name = "RateLimitError"          the run's error (failed or cancelled runs)
    data.plan != "free"                    anything without that value (missing included)
    timeout and (data.tier = gold or data.tier = silver)
    ratelimit*                             free text: every word must appear; `word*`
                                           matches words starting with it

Clauses and free text combine with `and` (also `&&`) and `or` (`||`), `and` binding
tighter, with parentheses. Values are JSON (`42`, `"a b"`, `true`) or bare text; a number
and its text are one value (`= 42` matches 42 and "42"). Free text matches whole words of
text values, case-insensitively. A query that does not parse is free text.

Evaluation gives a set of ids, or the complement of one (`!=`): `Result`. The runs list
intersects it with an index (status, function, time range), so a rare match among 100,000
runs costs a few index reads.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import orjson
from redis.asyncio import Redis

from .. import keys, shards
from ..indexes import Document, number_of, scalar_text, words_of
from .views import _text

_CLAUSE = re.compile(
    r"^\s*([A-Za-z_$][\w$-]*(?:\.[\w$-]+)*)\s*(==|=|!=|>=|<=|>|<)\s*(.+?)\s*$", re.DOTALL)
_KEYWORDS = {"and": "and", "&&": "and", "or": "or", "||": "or"}
MAX_PREFIX_WORDS = 500  # `word*` expands to at most this many indexed words


class SearchError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Result:
    """Ids that match, or (negated) the ids that do not match: everything else does."""

    ids: frozenset[str]
    negated: bool = False

    def both(self, other: Result) -> Result:
        if not self.negated and not other.negated:
            return Result(self.ids & other.ids)
        if not self.negated:
            return Result(self.ids - other.ids)
        if not other.negated:
            return Result(other.ids - self.ids)
        return Result(self.ids | other.ids, True)

    def either(self, other: Result) -> Result:
        if not self.negated and not other.negated:
            return Result(self.ids | other.ids)
        if not self.negated:
            return Result(other.ids - self.ids, True)
        if not other.negated:
            return Result(self.ids - other.ids, True)
        return Result(self.ids & other.ids, True)


@dataclasses.dataclass(frozen=True)
class Clause:
    path: str
    op: str  # = != < <= > >=
    value: Any
    raw: str

    @property
    def term(self) -> str:
        return f"{self.path}={scalar_text(self.value)}"

    def describe(self) -> str:
        return f"{self.path} {self.op} {self.raw}"

    def test(self, doc: Document) -> bool:
        bound = number_of(self.value)
        if self.op in ("=", "!="):
            if bound is not None:
                found = any(n == bound for n in doc.numbers.get(self.path, []))
            else:
                found = self.term in doc.terms
            return found == (self.op == "=")
        return bound is not None and any(
            _compare(n, self.op, bound) for n in doc.numbers.get(self.path, []))

    async def find(self, redis: Redis, scope: str) -> Result:
        """Numbers (and text that reads as one) from the path's number index, other values
        from their term's index."""
        bound = number_of(self.value)
        if self.op in ("=", "!=") and bound is None:
            got = await shards.members(redis, lambda shard: keys.search_term(scope, self.term,
                                                                            shard))
            return Result(frozenset(got), self.op == "!=")
        assert bound is not None  # checked when parsed
        low, high = {">": (f"({bound!r}", "+inf"), ">=": (repr(bound), "+inf"),
                     "<": ("-inf", f"({bound!r}"), "<=": ("-inf", repr(bound)),
                     "=": (repr(bound), repr(bound)), "!=": (repr(bound), repr(bound))}[self.op]
        found = await shards.each_shard(redis, lambda pipe, shard: pipe.zrangebyscore(
            keys.search_number(scope, self.path, shard), low, high))
        return Result(frozenset(_text(m) for part in found for m in part), self.op == "!=")


@dataclasses.dataclass(frozen=True)
class Text:
    words: tuple[str, ...]  # a trailing "*" marks a prefix

    def describe(self) -> str:
        return " ".join(self.words)

    def test(self, doc: Document) -> bool:
        for word in self.words:
            if word.endswith("*"):
                if not any(w.startswith(word[:-1]) for w in doc.words):
                    return False
            elif word not in doc.words:
                return False
        return True

    async def find(self, redis: Redis, scope: str) -> Result:
        found: frozenset[str] | None = None
        for word in self.words:
            if word.endswith("*"):
                # each shard's dictionary holds the words of its own runs (events): a word
                # is read in the shards that have it
                stem = word[:-1]
                async with redis.pipeline(transaction=False) as pipe:
                    for shard in keys.shards():
                        pipe.zrangebylex(keys.search_words(scope, shard), f"[{stem}",
                                         f"[{stem}\xff", 0, MAX_PREFIX_WORDS)
                    expanded = await pipe.execute()
                names = [(shard, _text(w)) for shard, words in zip(keys.shards(), expanded,
                                                                   strict=True)
                         for w in words]
            else:
                names = [(shard, word) for shard in keys.shards()]
            ids: set[str] = set()
            if names:
                async with redis.pipeline(transaction=False) as pipe:
                    for shard, name in names:
                        pipe.zrange(keys.search_word(scope, name, shard), 0, -1)
                    for members in await pipe.execute():
                        ids.update(_text(m) for m in members)
            found = frozenset(ids) if found is None else found & ids
            if not found:
                break
        return Result(found or frozenset())


@dataclasses.dataclass(frozen=True)
class Both:
    parts: tuple[Node, ...]
    any_of: bool  # `or` when True, `and` otherwise

    def describe(self) -> str:
        joiner = " or " if self.any_of else " and "
        return joiner.join(f"({p.describe()})" if isinstance(p, Both) else p.describe()
                           for p in self.parts)

    def test(self, doc: Document) -> bool:
        results = (p.test(doc) for p in self.parts)
        return any(results) if self.any_of else all(results)

    async def find(self, redis: Redis, scope: str) -> Result:
        result: Result | None = None
        for part in self.parts:
            found = await part.find(redis, scope)
            if result is None:
                result = found
            elif self.any_of:
                result = result.either(found)
            else:
                result = result.both(found)
                if not result.negated and not result.ids:
                    break
        assert result is not None
        return result


Node = Clause | Text | Both


@dataclasses.dataclass(frozen=True)
class Search:
    """A parsed query (see the module docstring). `error` says why it cannot be answered."""

    root: Node
    text: str
    error: str | None = None

    def describe(self) -> str:
        return self.root.describe()

    def matches(self, doc: Document) -> bool:
        """The same answer as the indexes, for one document (live lists)."""
        return self.error is None and self.root.test(doc)

    async def find(self, redis: Redis, scope: str) -> Result:
        if self.error is not None:
            return Result(frozenset())
        return await self.root.find(redis, scope)

    @property
    def clauses(self) -> tuple[Clause, ...]:
        return tuple(_clauses(self.root))


def _clauses(node: Node) -> list[Clause]:
    if isinstance(node, Clause):
        return [node]
    if isinstance(node, Both):
        return [c for part in node.parts for c in _clauses(part)]
    return []


def parse_search(text: str | None) -> Search | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        parser = _Parser(_tokens(text))
        root = parser.disjunction()
        if parser.pos != len(parser.tokens):
            raise SearchError("unbalanced parentheses")
    except SearchError:
        words = tuple(words_of(text))
        return Search(Text(words), text, None if words else "nothing to search for")
    error = next((f"{c.describe()}: {c.op} compares numbers" for c in _clauses(root)
                  if c.op not in ("=", "!=") and number_of(c.value) is None), None)
    if error is None and not _clauses(root) and not _text_words(root):
        error = "nothing to search for"
    return Search(root, text, error)


def _text_words(node: Node) -> list[str]:
    if isinstance(node, Text):
        return list(node.words)
    if isinstance(node, Both):
        return [w for part in node.parts for w in _text_words(part)]
    return []


def _tokens(text: str) -> list[str]:
    """Words, quoted strings (kept with their quotes) and parentheses."""
    out: list[str] = []
    current = ""
    quote = ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch in "()":
            if current:
                out.append(current)
                current = ""
            out.append(ch)
        elif ch.isspace():
            if current:
                out.append(current)
                current = ""
        else:
            current += ch
    if quote:
        raise SearchError("unclosed quote")
    if current:
        out.append(current)
    return out


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _keyword(self) -> str | None:
        token = self._peek()
        return _KEYWORDS.get(token.lower()) if token is not None else None

    def disjunction(self) -> Node:
        parts = [self.conjunction()]
        while self._keyword() == "or":
            self.pos += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Both(tuple(parts), True)

    def conjunction(self) -> Node:
        parts = [self.primary()]
        while True:
            keyword = self._keyword()
            if keyword == "and":
                self.pos += 1
            elif keyword is not None or self._peek() in (None, ")"):
                break
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else Both(tuple(parts), False)

    def primary(self) -> Node:
        token = self._peek()
        if token is None or token == ")" or self._keyword() is not None:
            raise SearchError("expected a clause or words")
        if token == "(":
            self.pos += 1
            node = self.disjunction()
            if self._peek() != ")":
                raise SearchError("unbalanced parentheses")
            self.pos += 1
            return node
        chunk = []
        while (token := self._peek()) is not None and token not in "()" \
                and self._keyword() is None:
            chunk.append(token)
            self.pos += 1
        return _chunk(" ".join(chunk))


def _chunk(text: str) -> Node:
    m = _CLAUSE.match(text)
    if not m:
        words = []
        for raw in text.split():
            prefix = raw.endswith("*")
            found = words_of(raw.strip("\"'"))
            if prefix and found:
                found[-1] += "*"
            words += found
        if not words:
            raise SearchError("no words")
        return Text(tuple(words))
    path = m.group(1)
    if path.startswith("event."):
        path = path[len("event."):]
    raw = m.group(3).strip()
    try:
        value: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw[1:-1] if len(raw) > 1 and raw[0] == raw[-1] == "'" else raw
    op = "=" if m.group(2) == "==" else m.group(2)
    return Clause(path, op, value, raw)


def _compare(left: float, op: str, right: float) -> bool:
    return {">": left > right, "<": left < right, ">=": left >= right,
            "<=": left <= right}[op]
