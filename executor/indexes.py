"""The dashboard's indexes, written by the scripts that start and end runs (and store events),
so filters and searches read indexes instead of examining runs one by one.

- Status: `keys.runs_by_status`, `keys.runs_of_function_status` (and `runs_running`), each a
  zset run id -> start time. A run enters its function's Running index when it starts and
  moves to its final status's indexes in the script that ends it (`lib_end_run.lua`).
- Search: a run's trigger event (paths as in the event: `data.user_id`, `name`), its output
  (`output.summary.tokens`) and its error (`error.name`) are flattened into documents
  (`document`): a number per numeric leaf (numbers, and strings that read as one: one
  zset per path, scored by the value, for `=` and range comparisons), a term `path=value`
  per other scalar leaf (also for any element of a list), and the words of its text
  values (free text, lower-cased). Each term, number and word is a zset of run ids
  (`keys.search_*`, scope "r"); events have their own (scope "e", data only, internal
  `inngest/*` events not indexed). Documents are capped (`MAX_LEAVES`, `MAX_WORDS`), so an
  enormous output costs a bounded number of writes.
- Statistics: `metrics_store`.

`start_plan` / `end_plan` / `event_plan` build what the scripts write; every key comes from
`executor/keys.py`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import orjson

from . import keys, metrics_store

MAX_LEAVES = 300
MAX_VALUE_CHARS = 96  # longer strings are searchable by their words, not as a whole value
MAX_WORDS = 300
MAX_TEXT_CHARS = 4000  # words are read from the start of a long string
MAX_WORD_CHARS = 64
MAX_DEPTH = 16
WORD = re.compile(r"\w+")
RUNS, EVENTS = "r", "e"


@dataclasses.dataclass
class Document:
    """What a search can match in one value (see the module docstring)."""

    terms: set[str] = dataclasses.field(default_factory=set)
    numbers: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    words: set[str] = dataclasses.field(default_factory=set)
    leaves: int = 0

    def merge(self, other: Document) -> Document:
        self.terms |= other.terms
        for path, values in other.numbers.items():
            self.numbers.setdefault(path, []).extend(values)
        self.words |= other.words
        return self


def scalar_text(value: Any) -> str:
    """The text a leaf is indexed (and a query value compared) as: strings as they are,
    JSON for the rest, integral floats as integers (42.0 and 42 are one value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
            and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, int | float):
        return orjson.dumps(value).decode() if math.isfinite(value) else str(value)
    return orjson.dumps(value).decode()


def number_of(value: Any) -> float | None:
    """A leaf's number for range comparisons: numbers, and strings that read as one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and 0 < len(value) <= 32:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def words_of(text: str) -> list[str]:
    return [w for w in WORD.findall(text[:MAX_TEXT_CHARS].lower()) if len(w) <= MAX_WORD_CHARS]


def document(value: Any, prefix: str = "") -> Document:
    """Flatten `value` into a search document; paths start with `prefix` ("" for events,
    "output", "error")."""
    doc = Document()
    _walk(value, [prefix] if prefix else [], doc, 0)
    return doc


def _walk(value: Any, path: list[str], doc: Document, depth: int) -> None:
    if doc.leaves >= MAX_LEAVES or depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _walk(item, [*path, str(key)], doc, depth + 1)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict | list) and path:
                _leaf(item, ".".join(path), doc, numbers=False)  # any element
            _walk(item, [*path, str(i)], doc, depth + 1)
        return
    _leaf(value, ".".join(path), doc)


def _leaf(value: Any, path: str, doc: Document, numbers: bool = True) -> None:
    doc.leaves += 1
    number = number_of(value)
    if number is not None:  # one zset per path holds every number: no key per value
        if numbers or path not in doc.numbers:
            doc.numbers.setdefault(path, []).append(number)
        return
    text = scalar_text(value)
    if len(text) <= MAX_VALUE_CHARS:
        doc.terms.add(f"{path}={text}")
    # free text reads values people write; not an event's name (every event of a name
    # would hold its words: the name filter does that) nor stack traces
    if len(doc.words) < MAX_WORDS and isinstance(value, str) and path != "name" \
            and not path.endswith(".stack"):
        for word in words_of(text):
            if len(doc.words) >= MAX_WORDS:
                break
            doc.words.add(word)


def entries(doc: Document, scope: str, shard: int) -> list[list[str]]:
    """[key, score, member] per index write in `shard` (the run's or event's): '' as score
    means the run's start (event's receipt) time, '' as member the run (event) id."""
    out = [[keys.search_term(scope, term, shard), "", ""] for term in sorted(doc.terms)]
    for path, values in sorted(doc.numbers.items()):
        out.append([keys.search_number(scope, path, shard), repr(values[-1]), ""])
    for word in sorted(doc.words):
        out.append([keys.search_word(scope, word, shard), "", ""])
        out.append([keys.search_words(scope, shard), "0", word])
    return out


def run_document(event: Any, status: str | None = None, output: Any = None) -> Document:
    """What a run search matches: the trigger event, and the output (Completed) or the error
    (any other end)."""
    doc = event_document(event)
    if status is not None and status != "Running":
        doc.merge(document(output, "output" if status == "Completed" else "error"))
    return doc


def start_plan(function_id: str, now_ms: int, event: Any, shard: int) -> dict[str, Any]:
    """What ingest.lua writes for a new run of `shard` besides the run itself (`ix` of its
    record)."""
    return {
        "running_fn": keys.runs_of_function_status(function_id, "Running", shard),
        "skipped_fn": keys.runs_of_function_status(function_id, "Skipped", shard),
        "skipped": keys.runs_by_status("Skipped", shard),
        "stats": metrics_store.stat_keys(function_id, now_ms, shard),
        "exp": [str(t) for t in metrics_store.stat_expiries(now_ms)],
        "terms": entries(event_document(event), RUNS, shard),
    }


def end_plan(run_id: str, function_id: str, status: str, now_ms: int,
             output: Any) -> tuple[list[str], list[str]]:
    """The KEYS and ARGV tails of a script that ends a run (`end_run` in lib_end_run.lua):
    the stats hashes, the status indexes, and the output's (error's) search entries, all
    in the run's shard."""
    shard = keys.shard_of(run_id)
    written = entries(document(output, "output" if status == "Completed" else "error"), RUNS,
                      shard)
    tail_keys = [*metrics_store.stat_keys(function_id, now_ms, shard),
                 keys.runs_by_status(status, shard),
                 keys.runs_of_function_status(function_id, "Running", shard),
                 keys.runs_of_function_status(function_id, status, shard),
                 *(key for key, _, _ in written)]
    tail_args = [str(t) for t in metrics_store.stat_expiries(now_ms)]
    for _, score, member in written:
        tail_args += [score, member]
    return tail_keys, tail_args


def is_internal(name: Any) -> bool:
    return isinstance(name, str) and name.startswith("inngest/")


def event_plan(wire: dict[str, Any], shard: int) -> dict[str, Any]:
    """What ingest.lua writes for an event stored in `shard` besides the event: the
    user-events index and the event's search entries (internal events: neither)."""
    if is_internal(wire.get("name")):
        return {"user_key": "", "terms": []}
    return {"user_key": keys.events_user(shard),
            "terms": entries(event_document(wire), EVENTS, shard)}


def event_document(event: Any) -> Document:
    """An event's searchable part: its name, data and user (not its id and time, which
    would cost an index entry per event and are shown anyway)."""
    if not isinstance(event, dict):
        return document(event)
    return document({k: event[k] for k in ("name", "data", "user") if k in event})
