"""Every Redis key the executor uses, built here and nowhere else.

The store is cut into shards (`--queue-shards`, fixed when the store is created; 1 unless
asked). Shard n's keys start with `il:{<tag n>}`, one hash tag, so on a Redis Cluster each
shard is one slot, on one master: every script and pipeline touches the keys of one shard.
What lives where:
- a run (its hash, memos, steps, listeners), an event and a queue item live in the shard
  their id names (`shard_of`: the last character of the id, a ULID's last base-32 digit);
- each shard has its own queue (items, ready, leased, leases, wake list) and its own
  indexes (runs by start, status, function; events by name; search terms; counters;
  pauses): a script that starts, steps, pauses, resumes or ends a run updates its shard's;
  readers (executor/read_model) merge the shards';
- the flow-control state of a function (concurrency, throttle, rate limit, idempotency,
  debounce, batch, singleton) lives in the function's home shard, where all its runs live
  (flow.home_shard), so lease and start stay single scripts;
- what is one per store (registry, auth, cron, bulk actions, the layout) lives in shard 0.
On a single Redis the shards are only names. Shard 0's tag is `s0`, the one tag of stores
written before shards existed, so a store of one shard is exactly such a store. The parts
after the prefix (event names, function ids, key values) may hold any text: the first
`{...}` of a name is its hash tag, and the prefix's comes first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

LAYOUT = "2"  # bumped when stored names change; stores of layout 1 are renamed (layout.py)
MAX_SHARDS = 32  # an id names its shard with one base-32 digit
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base 32 (ULIDs)
_shards = 1  # the store's shard count (configure)
_prefixes = ["il:{s0}"]


def _tags(count: int) -> list[str]:
    """The hash tags of `count` shards: shard 0's is `s0`; each other's is chosen so its
    slot falls in its own 1/count of the slot range, the range the first of that many
    equal parts `redis-cli --cluster create` gives each master. So `count` shards on
    `count` (or a divisor of that many) masters put the same number of shards on each."""
    def part(tag: str) -> int:
        return key_slot(tag.encode()) * count // REDIS_CLUSTER_HASH_SLOTS

    tags = {part("s0"): "s0"}
    for n in range(1, count):
        free = next(p for p in range(count) if p not in tags)
        k = 0
        while part(candidate := f"s{n}" if k == 0 else f"s{n}.{k}") != free:
            k += 1
        tags[free] = candidate
    return [tags[p] for p in sorted(tags, key=lambda p: tags[p] != "s0")]


def configure(shards: int) -> None:
    """Set the store's shard count, once at start, before any key is built."""
    global _shards, _prefixes
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"--queue-shards must be between 1 and {MAX_SHARDS}, not {shards}")
    _shards = shards
    _prefixes = [f"il:{{{tag}}}" for tag in _tags(shards)]


def shard_count() -> int:
    return _shards


def shards() -> range:
    """Every shard: readers of an index read each shard's and merge them."""
    return range(_shards)


def prefix(shard: int = 0) -> str:
    return _prefixes[shard]


_HEAD = re.compile(r"[^-:.]*")


def shard_of(id: str) -> int:
    """The shard of a run, an event or a queue item: the base-32 value of the last
    character of the id's first part (up to a '-', ':' or '.') modulo the shard count (0
    for a character not of that alphabet). A ULID is all one part; ids made from a run's
    (`<run>:<seq>` items, `<run>-finished` events, `<run>.<step>` invoke correlations) live
    in the run's shard."""
    if _shards == 1 or not id:
        return 0
    head = _HEAD.match(id).group()  # type: ignore[union-attr]
    return max(_ALPHABET.find(head[-1:].upper()), 0) % _shards


def shard_digit(shard: int) -> str:
    """The character that names `shard` at the end of an id's first part."""
    return _ALPHABET[shard]


def with_shard(id: str, shard: int) -> str:
    """`id` (a ULID) with its last digit changed so that it lives in `shard`."""
    if _shards == 1:
        return id
    return id[:-1] + _ALPHABET[shard]


def _at(id: str) -> str:
    return _prefixes[shard_of(id)]


PREFIX = "il:{s0}"  # shard 0: what is one per store
LAYOUT_KEY = f"{PREFIX}:layout"  # string: the layout this store is written in
SHARDS_KEY = f"{PREFIX}:shards"  # string: the store's shard count (absent: 1)


# -- queue -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QueueKeys:
    """One shard's queue."""

    items: str  # hash item id -> item JSON
    ready: str  # zset item id -> due time (ms): the delay queue
    leased: str  # zset item id -> lease expiry (ms)
    leases: str  # hash item id -> lease token of the holder
    wake: str  # list: one entry per enqueue, BLPOPed by idle workers

    def all(self) -> list[str]:
        return [self.items, self.ready, self.leased, self.leases, self.wake]


def queue(shard: int) -> QueueKeys:
    p = f"{_prefixes[shard]}:q"
    return QueueKeys(f"{p}:items", f"{p}:ready", f"{p}:leased", f"{p}:leases", f"{p}:wake")


def queue_of(id: str) -> QueueKeys:
    """The queue of an item's (or a run's) shard: an item's id names its run's, or its own
    for an item of no run (an intake, in its events' shard)."""
    return queue(shard_of(id))


def call_beat(call_id: str) -> str:
    """String with a TTL: when the step body of one call (item id + a nonce) last sent a
    heartbeat (ms). In its item's shard: heartbeat.lua checks the lease beside it."""
    return f"{_at(call_id)}:q:beat:{call_id}"


# -- registry ----------------------------------------------------------------------------
APPS = f"{PREFIX}:apps"  # hash app id -> app JSON (url, sdk, last sync, error)
FUNCTIONS = f"{PREFIX}:functions"  # hash function id -> function config JSON
REGISTRY_VERSION = f"{PREFIX}:registry:version"  # counter bumped on every sync


def registry_version(shard: int) -> str:
    """String: the registry version as a shard's scripts see it (shard 0's is the counter;
    the others' are copies written after each sync, so ingest.lua can check it there)."""
    return f"{_prefixes[shard]}:registry:version"
# hash function id -> {"app_id", "removed_at"} (JSON) of the functions a sync of their app
# dropped: retention deletes their own keys (usage, cron state) once the retention period
# has passed since, and an app with no functions only after its removed ones are gone
FUNCTIONS_REMOVED = f"{PREFIX}:functions:removed"
# zset "<function id>|<cron source>" -> when a sync dropped that schedule (ms): its cron
# state (`cron_last`) is kept that long, so a schedule put back soon fires what it missed
CRONS_RETIRED = f"{PREFIX}:cron:retired"

# -- events ------------------------------------------------------------------------------
def events(shard: int) -> str:
    """Zset: event id -> received time (ms) of a shard's events, newest last."""
    return f"{_prefixes[shard]}:events"


def event(event_id: str) -> str:
    """String: the stored event JSON (as the SDK receives it)."""
    return f"{_at(event_id)}:event:{event_id}"


def event_runs(event_id: str, shard: int) -> str:
    """List: ids of the runs this event started in `shard`."""
    return f"{_prefixes[shard]}:event:{event_id}:runs"


def shard_by_hash(name: str) -> int:
    """A fixed shard for a name (a sender's event id, a function id)."""
    if _shards == 1:
        return 0
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "big") % _shards


def event_dedupe(sender_id: str) -> str:
    """String with a TTL: the id of the event stored for a sender's event `id`, so a
    repeated send of that id (a retried POST) stores nothing new for 24 h."""
    # the sender's events live in this shard too (ingest), so a repeated send lands where
    # the first did, beside the key that remembers it
    return f"{_prefixes[shard_by_hash(sender_id)]}:event-id:{sender_id}"


def events_by_name(name: str, shard: int) -> str:
    """Zset: event ids of one name -> received time (ms), in a shard."""
    return f"{_prefixes[shard]}:events:name:{name}"


def events_user(shard: int) -> str:
    """Zset: event id -> received time (ms) of a shard's events not named `inngest/*` (the
    Events page's default list: internal lifecycle events would otherwise bury the user's)."""
    return f"{_prefixes[shard]}:events:user"


def event_resumed(event_id: str, shard: int) -> str:
    """List: ids of the runs of `shard` whose wait this event resumed."""
    return f"{_prefixes[shard]}:event:{event_id}:resumed"


def event_cancelled(event_id: str, shard: int) -> str:
    """List: ids of the runs of `shard` this event cancelled (`cancelOn`)."""
    return f"{_prefixes[shard]}:event:{event_id}:cancelled"


# -- runs --------------------------------------------------------------------------------
def runs(shard: int) -> str:
    """Zset: run id -> start time (ms) of a shard's runs."""
    return f"{_prefixes[shard]}:runs"


def runs_running(shard: int) -> str:
    """Zset: run id -> start time (ms) of a shard's runs that are Running: added when a run
    starts, removed in the script that ends it; the invariant sweep walks it."""
    return f"{_prefixes[shard]}:runs:running"


def runs_stalled(shard: int) -> str:
    """Zset: run id -> since (ms) of a shard's runs flagged stalled; entries of runs that
    ended are removed by the stall sweep."""
    return f"{_prefixes[shard]}:runs:stalled"


def runs_of_function(function_id: str, shard: int) -> str:
    """Zset: run id -> start time (ms) of one function's runs (dashboard filter, stats)."""
    return f"{_prefixes[shard]}:runs:fn:{function_id}"


def runs_by_status(status: str, shard: int) -> str:
    """Zset: run id -> start time (ms) of the runs that ended with `status` (Completed,
    Failed, Cancelled, Skipped); the Running ones are runs_running. Written by the scripts
    that start and end runs, so a status filter reads an index, not every run."""
    return f"{_prefixes[shard]}:runs:status:{status}"


def runs_of_function_status(function_id: str, status: str, shard: int) -> str:
    """Zset: run id -> start time (ms) of one function's runs with `status` (Running
    included: a run moves from that index to its final one when it ends)."""
    return f"{_prefixes[shard]}:runs:fs:{status}:{function_id}"


def run(run_id: str) -> str:
    """Hash: run metadata (function, status, output, times, events, version, seq; `error`:
    a failed run's normalized error for its end events, beside the SDK's body in `output`)."""
    return f"{_at(run_id)}:run:{run_id}"


def run_memos(run_id: str) -> str:
    """Hash: hashed step id -> memo JSON ({"data": ...} | {"error": ...} | null)."""
    return f"{_at(run_id)}:run:{run_id}:memos"


def run_stack(run_id: str) -> str:
    """List: hashed step ids in the order their memos were saved (ctx.stack)."""
    return f"{_at(run_id)}:run:{run_id}:stack"


def run_steps(run_id: str) -> str:
    """Hash: hashed step id -> step record JSON (name, status, attempts, times, error)."""
    return f"{_at(run_id)}:run:{run_id}:steps"


def run_pending(run_id: str) -> str:
    """Set: hashed ids of planned (parallel) steps whose calls have not finished yet."""
    return f"{_at(run_id)}:run:{run_id}:pending"


def run_usage(run_id: str) -> str:
    """Hash: the usage a run's step bodies reported: `c:<call id>:<hashed step id>` -> the
    last report of one step body in one call (the dedup key), `s:<hashed step id>` -> the
    step's totals (per model, per attempt).
    The run's own totals are fields of the run hash (the budget check reads them there)."""
    return f"{_at(run_id)}:run:{run_id}:usage"
def run_reruns(run_id: str) -> str:
    """List: ids of the runs started as reruns of this one."""
    return f"{_at(run_id)}:run:{run_id}:reruns"


def run_keys(run_id: str) -> list[str]:
    """The keys of one run, in the order the run scripts take them."""
    return [run(run_id), run_memos(run_id), run_stack(run_id), run_steps(run_id),
            run_pending(run_id), run_listeners(run_id)]


def idempotency(function_id: str, key: str, shard: int) -> str:
    """String with a TTL: set when a run starts for (function, idempotency key), in the
    function's home shard."""
    return f"{_prefixes[shard]}:idem:{function_id}:{key}"


def run_listeners(run_id: str) -> str:
    """Set: the run's pauses and cancel listeners, each named by its id and address (a
    JSON array, pause_index.PauseRef; `<pause hash key>|<pause id>` in members written
    before addresses), so that the run's end removes them (lifecycle.py, unlisten.lua)."""
    return f"{_at(run_id)}:run:{run_id}:listeners"


# -- pauses ------------------------------------------------------------------------------
def pauses(event_name: str, shard: int) -> str:
    """Hash: pause id -> pause JSON, for runs waiting for (or cancelled by) `event_name`
    whose expression has no indexable equality (see executor/pause_index.py): every event
    of that name reads them all. (Pauses made before the index existed are here too.)"""
    return f"{_prefixes[shard]}:pauses:{event_name}"


# a field name an indexed path may hold: no '.', which joins them, and no '=', which ends
# the path in a bucket's key
PATH_PART = re.compile(r"[A-Za-z0-9_\-]+")
BUCKET_VALUE_CHARS = 200  # longer values are named by their digest in a bucket's key


def pause_bucket(event_name: str, path: str, value: str, shard: int) -> str:
    """Hash: pause id -> pause JSON, for the pauses of `event_name` that hold only if the
    event's field at `path` (`data.order_id`) has the value `value` (its bucket text, see
    pause_index.bucket_value). The name is length-prefixed: names may hold any character."""
    if len(value) > BUCKET_VALUE_CHARS:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return f"{_prefixes[shard]}:pause-ix:{len(event_name)}:{event_name}:{path}={value}"


def pause_paths(event_name: str, shard: int) -> str:
    """Set: the paths pauses of `event_name` are indexed on (an event reads one bucket per
    path). Added before (or with) the first pause of a path; never removed: a path whose
    buckets are empty costs an event one empty read."""
    return f"{_prefixes[shard]}:pause-paths:{event_name}"


def pauses_by_correlation(shard: int) -> str:
    """Hash: correlation id -> invoke pause, of a shard's runs."""
    return f"{_prefixes[shard]}:pauses:correlation"


def pause_hash(address: Sequence[str], shard: int) -> str:
    """The hash of `shard` that holds the pauses at `address`, the name queue items and a
    run's listeners set give a pause instead of its key (pause_index.PauseRef):
    `["c"]` the invoke pauses by correlation id, `["e", event name]` the unindexed pauses of
    a name, `["b", event name, path, bucket value]` an index bucket."""
    match list(address):
        case ["c"]:
            return pauses_by_correlation(shard)
        case ["e", str(event_name)]:
            return pauses(event_name, shard)
        case ["b", str(event_name), str(path), str(value)]:
            return pause_bucket(event_name, path, value, shard)
    raise ValueError(f"not a pause address: {address!r}")

# -- usage ---------------------------------------------------------------------------------
def function_usage(function_id: str, shard: int) -> str:
    """Hash: a function's usage totals: cost_usd, input_tokens, output_tokens, runs (that
    reported usage), `d:<unix day>:cost_usd|tokens` per day, `m:<model>:cost_usd|tokens`."""
    return f"{_prefixes[shard]}:usage:fn:{function_id}"


# -- lifecycle -----------------------------------------------------------------------------
def outbox(shard: int) -> str:
    """Zset: run id -> end time (ms) of a shard's runs whose end events are still to emit."""
    return f"{_prefixes[shard]}:outbox"


def cron_last(function_id: str) -> str:
    """String: the last cron tick (ms) fired for a function."""
    return f"{PREFIX}:cron:{function_id}:last"


def cron_tick(function_id: str, tick_ms: int) -> str:
    """String with a TTL: set NX by the one scheduler that fires this tick."""
    return f"{PREFIX}:cron:{function_id}:tick:{tick_ms}"


def cancellation(cancellation_id: str) -> str:
    """Hash: a bulk cancellation's request and result."""
    return f"{PREFIX}:cancellation:{cancellation_id}"


# -- dashboard: search indexes, statistics, bulk actions -----------------------------------
# Search: `scope` is "r" (runs: trigger event, output, error) or "e" (events). Members are
# run (event) ids; scores the run's start (event's receipt) time, or the value for numbers.
def search_term(scope: str, term: str, shard: int) -> str:
    """Zset: the runs (events) with a leaf `path=value` (see executor/indexes.py)."""
    return f"{_prefixes[shard]}:search:{scope}:t:{term}"


def search_number(scope: str, path: str, shard: int) -> str:
    """Zset: run (event) id -> the number at `path` (range comparisons)."""
    return f"{_prefixes[shard]}:search:{scope}:n:{path}"


def search_word(scope: str, word: str, shard: int) -> str:
    """Zset: the runs (events) with `word` in one of their text values (free text)."""
    return f"{_prefixes[shard]}:search:{scope}:w:{word}"


def search_words(scope: str, shard: int) -> str:
    """Zset (all scores 0): every indexed word, for `prefix*` searches (ZRANGEBYLEX)."""
    return f"{_prefixes[shard]}:search:{scope}:words"


def stats_minute(function_id: str, minute: int, shard: int) -> str:
    """Hash: the counters of one function's runs that started or ended in one minute (unix
    ms // 60000): metric -> count (see executor/metrics_store.py). Expires."""
    return f"{_prefixes[shard]}:stats:m:{minute}:{function_id}"


def stats_hour(function_id: str, hour: int, shard: int) -> str:
    """Hash: the same counters per hour (unix ms // 3600000), kept longer."""
    return f"{_prefixes[shard]}:stats:h:{hour}:{function_id}"


def concurrency_waiting_keys(shard: int) -> str:
    """Set: the names of a shard's concurrency slots whose waiting zset ever held an item
    back (the backlog read walks them; an empty zset costs a ZCARD). Before slots had names
    its members were the waiting zsets' keys: `slot_keys` reads both."""
    return f"{_prefixes[shard]}:conc-wait-keys"


BULK_JOBS = f"{PREFIX}:bulk"  # zset bulk job id -> created (ms)


def bulk_job(job_id: str) -> str:
    """Hash: a bulk action's request, progress and result."""
    return f"{PREFIX}:bulk:{job_id}"


def bulk_job_runs(job_id: str) -> str:
    """List: the run ids a bulk action acts on, in order (progress is an index into it)."""
    return f"{PREFIX}:bulk:{job_id}:runs"


# -- production auth -------------------------------------------------------------------------
EVENT_KEYS = f"{PREFIX}:event-keys"  # hash sha256(event key) -> {name, hint, created_at}
SESSION_SECRET = f"{PREFIX}:session-secret"  # random secret shared by every process


def session(token_hash: str) -> str:
    """String with a TTL: a dashboard login session, keyed by the hash of its cookie."""
    return f"{PREFIX}:session:{token_hash}"


def login_failures(client: str) -> str:
    """String counter with a TTL: failed dashboard logins from one client address."""
    return f"{PREFIX}:login-failures:{client}"


# -- flow control ----------------------------------------------------------------------------
def concurrency_slot(scope_id: str, expression: str, value: str) -> str:
    """The name of one concurrency key (scope, key expression, the value it gave): what a
    queue item's `ck` and the waiting set hold, never a key; `slot_keys` makes its keys."""
    digest = hashlib.sha1(expression.encode()).hexdigest()[:8] if expression else "-"
    return f"{scope_id}:{digest}:{value}"


def slot_keys(name: str, shard: int) -> tuple[str, str]:
    """A concurrency slot's keys in a shard: (zset of the queue items executing under it ->
    lease expiry ms, zset of the due items it holds back -> their due time ms). Held per
    key, so one hot key's backlog never blocks the head of the shared ready queue.
    A name that is a whole key is from a store written before slots had names (an item's
    `ck` then held the holders' key, the waiting set the waiting zset's)."""
    if name.startswith("il:{") and (":conc:" in name or ":conc-wait:" in name):
        return name.replace(":conc-wait:", ":conc:", 1), name.replace(":conc:", ":conc-wait:", 1)
    return f"{_prefixes[shard]}:conc:{name}", f"{_prefixes[shard]}:conc-wait:{name}"


def throttle(function_id: str, value: str, shard: int) -> str:
    """String: the throttle's theoretical arrival time (GCRA), per function and key."""
    return f"{_prefixes[shard]}:throttle:{function_id}:{value}"


def rate_limit(function_id: str, value: str, shard: int) -> str:
    """Zset: start times (ms) of recent runs, per function and key (sliding window)."""
    return f"{_prefixes[shard]}:ratelimit:{function_id}:{value}"


def debounce(function_id: str, value: str, shard: int) -> str:
    """Hash {run, first}: the pending debounced run per function and key."""
    return f"{_prefixes[shard]}:debounce:{function_id}:{value}"


def batch(function_id: str, value: str, shard: int) -> str:
    """Hash {run, count}: the batch being filled per function and key."""
    return f"{_prefixes[shard]}:batch:{function_id}:{value}"


def singletons(shard: int) -> str:
    """Hash: singleton name (`singleton_name`) -> the id of the run holding it, for the
    singleton functions whose home shard is `shard`. The holding run's hash names its field
    (`singleton`), so ending the run frees it (lib_end_run.lua). (Stores written before
    this hash held one string key per name, `<prefix>:singleton:<function>:<value>`,
    named in the run's `singleton_key` field: nothing reads those any more.)"""
    return f"{_prefixes[shard]}:singletons"


def singleton_name(function_id: str, value: str) -> str:
    """A field of `singletons`: a singleton function and its key's value."""
    return f"{function_id}:{value}"
