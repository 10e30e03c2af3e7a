"""Reading what the store keeps one of per shard (`executor/keys.py`) as if it were one.

Every index is cut into one zset (set, list, hash) per shard. A reader sends each shard's
command with the same bounds, all in one pipeline, and merges the answers here: on a Redis
Cluster a command may touch the keys of one slot only (one shard), while the cluster client
splits a pipeline per node. So nothing here ever names keys of two shards in one command.

Merged entries come in the order one zset would give them: by score, then by member (Redis
orders equal scores by the members' bytes; UTF-8 keeps code point order, so comparing the
decoded text agrees). Counts are summed. With one shard every read below sends the same
commands as a read of the one index would, in as many round trips: the merge of one answer
is that answer.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from redis.asyncio import Redis

from . import keys

# one shard's key of an index: `keys.runs`, `lambda shard: keys.runs_of_function(fn, shard)`
Index = Callable[[int], str]
Entry = tuple[str, float]  # (member, score) of a zset
MEMBERS_PER_COMMAND = 10_000  # ZMSCORE of a big match set goes in pieces of this size


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(entry: Entry) -> tuple[float, str]:
    return entry[1], entry[0]


def entries(reply: Iterable[tuple[Any, Any]]) -> list[Entry]:
    """A WITHSCORES reply as (member, score) pairs."""
    return [(_text(m), float(s)) for m, s in reply]


def newest_first(answers: Iterable[Iterable[Entry]]) -> Iterator[Entry]:
    """Shards' answers, each newest first, as one newest first."""
    return heapq.merge(*answers, key=_order, reverse=True)


def oldest_first(answers: Iterable[Iterable[Entry]]) -> Iterator[Entry]:
    """Shards' answers, each oldest first, as one oldest first."""
    return heapq.merge(*answers, key=_order)


async def each_shard(redis: Redis, command: Callable[[Any, int], Any]) -> list[Any]:
    """`command(pipe, shard)` queues one command for each shard; their replies, by shard.
    One round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.shards():
            command(pipe, shard)
        replies: list[Any] = await pipe.execute()
    return replies


async def newest(redis: Redis, index: Index, count: int, high: Any = "+inf",
                 low: Any = "-inf") -> list[Entry]:
    """The `count` newest entries of an index within [low, high]: each shard's `count`
    newest, merged; one round trip."""
    answers = await each_shard(redis, lambda pipe, shard: pipe.zrevrangebyscore(
        index(shard), high, low, start=0, num=count, withscores=True))
    return list(newest_first(entries(a) for a in answers))[:count]


async def oldest(redis: Redis, index: Index, count: int, low: Any = "-inf",
                 high: Any = "+inf") -> list[Entry]:
    """The `count` oldest entries of an index within [low, high]; one round trip."""
    answers = await each_shard(redis, lambda pipe, shard: pipe.zrangebyscore(
        index(shard), low, high, start=0, num=count, withscores=True))
    return list(oldest_first(entries(a) for a in answers))[:count]


async def count(redis: Redis, index: Index, low: Any = "-inf", high: Any = "+inf") -> int:
    """How many entries of an index score within [low, high]: the shards' ZCOUNTs summed."""
    counts = await each_shard(redis, lambda pipe, shard: pipe.zcount(index(shard), low, high))
    return sum(int(c) for c in counts)


async def members(redis: Redis, index: Index) -> set[str]:
    """Every member of an index (a search term's runs): the union of the shards'. A run
    (event) is in its own shard's indexes only, so the shards' answers never overlap."""
    answers = await each_shard(redis, lambda pipe, shard: pipe.zrange(index(shard), 0, -1))
    return {_text(m) for answer in answers for m in answer}


async def scores(redis: Redis, index: Index, ids: list[str]) -> list[float | None]:
    """Each run's (event's) score in an index (None: not in it). An id is only ever in its
    own shard's index (`keys.shard_of`), so each is asked there: the cost is the number of
    ids, whatever the number of shards."""
    if not ids:
        return []
    by_shard: dict[int, list[int]] = collections.defaultdict(list)
    for at, member in enumerate(ids):
        by_shard[keys.shard_of(member)].append(at)
    pieces: list[list[int]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for shard, positions in by_shard.items():
            for start in range(0, len(positions), MEMBERS_PER_COMMAND):
                piece = positions[start:start + MEMBERS_PER_COMMAND]
                pipe.zmscore(index(shard), [ids[i] for i in piece])
                pieces.append(piece)
        replies = await pipe.execute()
    out: list[float | None] = [None] * len(ids)
    for piece, reply in zip(pieces, replies, strict=True):
        for i, score in zip(piece, reply, strict=True):
            out[i] = score
    return out


@dataclasses.dataclass
class _Stream:
    """One shard's part of a merged walk: what was read and not taken yet."""

    key: str
    size: int  # how many the next read asks for
    read: int = 0  # entries of the range read so far: the next read's offset
    ended: bool = False
    buffer: collections.deque[Entry] = dataclasses.field(default_factory=collections.deque)


async def walk_newest(redis: Redis, index: Index, want: int, after: tuple[int, str] | None,
                      low: int | None, high: int | None, skip: frozenset[str] = frozenset(),
                      chunk: int | None = None) -> tuple[list[Entry], int]:
    """Up to `want` entries of an index newest first, within [low, high], strictly after
    `after` (the (score, member) a page ended on) and not in `skip`; and how many entries
    the index holds within [low, high] in all (None: unbounded).

    Each shard's range is read from its top (ZREVRANGEBYSCORE with LIMIT: O(log N) plus
    what it returns) and the shards merged, so the page is the one a single zset would
    give, ties at the cursor's score included. A shard whose entries run out before the
    page is full (they were skipped, or before the cursor at its score) is read on, each
    read twice the last: many skipped entries cost few round trips. Usually the first
    round trip, with the counts, does it all."""
    bottom: Any = low if low is not None else "-inf"
    ceiling: Any = high if high is not None else "+inf"
    top = ceiling if after is None or (high is not None and high < after[0]) else after[0]
    # a range from the cursor's score holds the cursor's own entry: read one more for it
    size = (chunk or want) + (after is not None)
    streams = [_Stream(index(shard), size) for shard in keys.shards()]
    found: list[Entry] = []
    total: int | None = None
    while len(found) < want:
        hungry = [s for s in streams if not s.buffer and not s.ended]
        if hungry:
            async with redis.pipeline(transaction=False) as pipe:
                for s in hungry:
                    pipe.zrevrangebyscore(s.key, top, bottom, start=s.read, num=s.size,
                                          withscores=True)
                if total is None:
                    for s in streams:
                        pipe.zcount(s.key, bottom, ceiling)
                replies = await pipe.execute()
            for s, reply in zip(hungry, replies, strict=False):
                got = entries(reply)
                s.read += len(got)
                s.ended = len(got) < s.size
                s.size *= 2
                s.buffer.extend(e for e in got if e[0] not in skip
                                and (after is None or (e[1], e[0]) < after))
            if total is None:
                total = sum(int(c) for c in replies[len(hungry):])
            continue  # a stream read again may still hold nothing to take
        live = [s for s in streams if s.buffer]
        if not live:
            break
        found.append(max(live, key=lambda s: _order(s.buffer[0])).buffer.popleft())
    if total is None:
        total = await count(redis, index, bottom, ceiling)
    return found, total
