"""Every Redis key the executor uses, built here and nowhere else.

Every key starts with PREFIX, whose hash tag (`{s0}`) puts every key in one hash slot. On a
single Redis that changes nothing; on a Redis Cluster it makes every script valid (a script
may only touch keys of one slot, and ours touch a run's keys, the queue's and the indexes'
at once) and puts the whole store on one master and its replicas: a cluster gives failover,
not yet more throughput. Spreading runs over several shards (`{s<n>}`) is the next step.
The parts after the prefix (event names, function ids, key values) may hold any text: the
first `{...}` of a name is its hash tag, and the prefix's comes first.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "il:{s0}"
LAYOUT = "2"  # bumped when stored names change; stores of layout 1 are renamed (layout.py)
LAYOUT_KEY = f"{PREFIX}:layout"  # string: the layout this store is written in

# -- queue -------------------------------------------------------------------------------
QUEUE_ITEMS = f"{PREFIX}:q:items"  # hash item id -> item JSON
QUEUE_READY = f"{PREFIX}:q:ready"  # zset item id -> due time (ms): the delay queue
QUEUE_LEASED = f"{PREFIX}:q:leased"  # zset item id -> lease expiry (ms)
QUEUE_LEASES = f"{PREFIX}:q:leases"  # hash item id -> lease token of the holder
QUEUE_WAKE = f"{PREFIX}:q:wake"  # list: one entry per enqueue, BLPOPed by idle workers


def call_beat(call_id: str) -> str:
    """String with a TTL: when the step body of one call (item id + a nonce) last sent a
    heartbeat (ms). In the queue's slot: heartbeat.lua checks the lease beside it."""
    return f"{PREFIX}:q:beat:{call_id}"


# -- registry ----------------------------------------------------------------------------
APPS = f"{PREFIX}:apps"  # hash app id -> app JSON (url, sdk, last sync, error)
FUNCTIONS = f"{PREFIX}:functions"  # hash function id -> function config JSON
REGISTRY_VERSION = f"{PREFIX}:registry:version"  # counter bumped on every sync
# hash function id -> {"app_id", "removed_at"} (JSON) of the functions a sync of their app
# dropped: retention deletes their own keys (usage, cron state) once the retention period
# has passed since, and an app with no functions only after its removed ones are gone
FUNCTIONS_REMOVED = f"{PREFIX}:functions:removed"
# zset "<function id>|<cron source>" -> when a sync dropped that schedule (ms): its cron
# state (`cron_last`) is kept that long, so a schedule put back soon fires what it missed
CRONS_RETIRED = f"{PREFIX}:cron:retired"

# -- events ------------------------------------------------------------------------------
EVENTS = f"{PREFIX}:events"  # zset event id -> received time (ms), newest last


def event(event_id: str) -> str:
    """String: the stored event JSON (as the SDK receives it)."""
    return f"{PREFIX}:event:{event_id}"


def event_runs(event_id: str) -> str:
    """List: ids of the runs this event started."""
    return f"{PREFIX}:event:{event_id}:runs"


def event_dedupe(sender_id: str) -> str:
    """String with a TTL: the id of the event stored for a sender's event `id`, so a
    repeated send of that id (a retried POST) stores nothing new for 24 h."""
    return f"{PREFIX}:event-id:{sender_id}"


def events_by_name(name: str) -> str:
    """Zset: event ids of one name -> received time (ms)."""
    return f"{PREFIX}:events:name:{name}"


# zset event id -> received time (ms) of the events not named `inngest/*` (the Events page's
# default list: internal lifecycle events would otherwise bury the user's)
EVENTS_USER = f"{PREFIX}:events:user"


def event_resumed(event_id: str) -> str:
    """List: ids of the runs whose wait this event resumed."""
    return f"{PREFIX}:event:{event_id}:resumed"


def event_cancelled(event_id: str) -> str:
    """List: ids of the runs this event cancelled (`cancelOn`)."""
    return f"{PREFIX}:event:{event_id}:cancelled"


# -- runs --------------------------------------------------------------------------------
RUNS = f"{PREFIX}:runs"  # zset run id -> start time (ms)
# zset run id -> start time (ms) of the runs that are Running: added when a run starts,
# removed in the script that ends it; the invariant sweep walks it
RUNS_RUNNING = f"{PREFIX}:runs:running"


# zset run id -> since (ms) of the runs flagged stalled; entries of runs that ended are
# removed by the stall sweep
RUNS_STALLED = f"{PREFIX}:runs:stalled"


def runs_of_function(function_id: str) -> str:
    """Zset: run id -> start time (ms) of one function's runs (dashboard filter, stats)."""
    return f"{PREFIX}:runs:fn:{function_id}"


def runs_by_status(status: str) -> str:
    """Zset: run id -> start time (ms) of the runs that ended with `status` (Completed,
    Failed, Cancelled, Skipped); the Running ones are RUNS_RUNNING. Written by the scripts
    that start and end runs, so a status filter reads an index, not every run."""
    return f"{PREFIX}:runs:status:{status}"


def runs_of_function_status(function_id: str, status: str) -> str:
    """Zset: run id -> start time (ms) of one function's runs with `status` (Running
    included: a run moves from that index to its final one when it ends)."""
    return f"{PREFIX}:runs:fs:{status}:{function_id}"


RUN_PREFIX = f"{PREFIX}:run:"  # scripts that find a run by id append it


def run(run_id: str) -> str:
    """Hash: run metadata (function, status, output, times, events, version, seq; `error`:
    a failed run's normalized error for its end events, beside the SDK's body in `output`)."""
    return f"{RUN_PREFIX}{run_id}"


def run_memos(run_id: str) -> str:
    """Hash: hashed step id -> memo JSON ({"data": ...} | {"error": ...} | null)."""
    return f"{PREFIX}:run:{run_id}:memos"


def run_stack(run_id: str) -> str:
    """List: hashed step ids in the order their memos were saved (ctx.stack)."""
    return f"{PREFIX}:run:{run_id}:stack"


def run_steps(run_id: str) -> str:
    """Hash: hashed step id -> step record JSON (name, status, attempts, times, error)."""
    return f"{PREFIX}:run:{run_id}:steps"


def run_pending(run_id: str) -> str:
    """Set: hashed ids of planned (parallel) steps whose calls have not finished yet."""
    return f"{PREFIX}:run:{run_id}:pending"


def run_usage(run_id: str) -> str:
    """Hash: the usage a run's step bodies reported: `c:<call id>:<hashed step id>` -> the
    last report of one step body in one call (the dedup key), `s:<hashed step id>` -> the
    step's totals (per model, per attempt).
    The run's own totals are fields of the run hash (the budget check reads them there)."""
    return f"{PREFIX}:run:{run_id}:usage"
def run_reruns(run_id: str) -> str:
    """List: ids of the runs started as reruns of this one."""
    return f"{PREFIX}:run:{run_id}:reruns"


def run_keys(run_id: str) -> list[str]:
    """The keys of one run, in the order the run scripts take them."""
    return [run(run_id), run_memos(run_id), run_stack(run_id), run_steps(run_id),
            run_pending(run_id), run_listeners(run_id)]


def idempotency(function_id: str, key: str) -> str:
    """String with a TTL: set when a run starts for (function, idempotency key)."""
    return f"{PREFIX}:idem:{function_id}:{key}"


def run_listeners(run_id: str) -> str:
    """Set: `<pause hash key>|<pause id>` of the run's pauses and cancel listeners, so that
    ending the run removes them."""
    return f"{PREFIX}:run:{run_id}:listeners"


# -- pauses ------------------------------------------------------------------------------
def pauses(event_name: str) -> str:
    """Hash: pause id -> pause JSON, for runs waiting for (or cancelled by) `event_name`
    whose expression has no indexable equality (see executor/pause_index.py): every event
    of that name reads them all. (Pauses made before the index existed are here too.)"""
    return f"{PREFIX}:pauses:{event_name}"


# a field name an indexed path may hold: no '.', which joins them, and no '=', which ends
# the path in a bucket's key
PATH_PART = re.compile(r"[A-Za-z0-9_\-]+")
BUCKET_VALUE_CHARS = 200  # longer values are named by their digest in a bucket's key


def pause_bucket(event_name: str, path: str, value: str) -> str:
    """Hash: pause id -> pause JSON, for the pauses of `event_name` that hold only if the
    event's field at `path` (`data.order_id`) has the value `value` (its bucket text, see
    pause_index.bucket_value). The name is length-prefixed: names may hold any character."""
    if len(value) > BUCKET_VALUE_CHARS:
        value = "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    return f"{PREFIX}:pause-ix:{len(event_name)}:{event_name}:{path}={value}"


def pause_paths(event_name: str) -> str:
    """Set: the paths pauses of `event_name` are indexed on (an event reads one bucket per
    path). Added before (or with) the first pause of a path; never removed: a path whose
    buckets are empty costs an event one empty read."""
    return f"{PREFIX}:pause-paths:{event_name}"


PAUSES_BY_CORRELATION = f"{PREFIX}:pauses:correlation"  # hash correlation id -> invoke pause

# -- usage ---------------------------------------------------------------------------------
def function_usage(function_id: str) -> str:
    """Hash: a function's usage totals: cost_usd, input_tokens, output_tokens, runs (that
    reported usage), `d:<unix day>:cost_usd|tokens` per day, `m:<model>:cost_usd|tokens`."""
    return f"{PREFIX}:usage:fn:{function_id}"


# -- lifecycle -----------------------------------------------------------------------------
OUTBOX = f"{PREFIX}:outbox"  # zset run id -> end time (ms): end events still to emit


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
def search_term(scope: str, term: str) -> str:
    """Zset: the runs (events) with a leaf `path=value` (see executor/indexes.py)."""
    return f"{PREFIX}:search:{scope}:t:{term}"


def search_number(scope: str, path: str) -> str:
    """Zset: run (event) id -> the number at `path` (range comparisons)."""
    return f"{PREFIX}:search:{scope}:n:{path}"


def search_word(scope: str, word: str) -> str:
    """Zset: the runs (events) with `word` in one of their text values (free text)."""
    return f"{PREFIX}:search:{scope}:w:{word}"


def search_words(scope: str) -> str:
    """Zset (all scores 0): every indexed word, for `prefix*` searches (ZRANGEBYLEX)."""
    return f"{PREFIX}:search:{scope}:words"


def stats_minute(function_id: str, minute: int) -> str:
    """Hash: the counters of one function's runs that started or ended in one minute (unix
    ms // 60000): metric -> count (see executor/metrics_store.py). Expires."""
    return f"{PREFIX}:stats:m:{minute}:{function_id}"


def stats_hour(function_id: str, hour: int) -> str:
    """Hash: the same counters per hour (unix ms // 3600000), kept longer."""
    return f"{PREFIX}:stats:h:{hour}:{function_id}"


# set: the concurrency waiting zsets that ever held an item back (the backlog read walks
# them; an empty zset costs a ZCARD)
CONCURRENCY_WAITING = f"{PREFIX}:conc-wait-keys"

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
def _scoped(kind: str, scope_id: str, expression: str, value: str) -> str:
    digest = hashlib.sha1(expression.encode()).hexdigest()[:8] if expression else "-"
    return f"{PREFIX}:{kind}:{scope_id}:{digest}:{value}"


def concurrency(scope_id: str, expression: str, value: str) -> str:
    """Zset: queue items executing under one concurrency key -> lease expiry (ms)."""
    return _scoped("conc", scope_id, expression, value)


def concurrency_waiting(scope_id: str, expression: str, value: str) -> str:
    """Zset: due items held back by that concurrency key -> their due time (ms). Held
    per key, so one hot key's backlog never blocks the head of the shared ready queue."""
    return _scoped("conc-wait", scope_id, expression, value)


def throttle(function_id: str, value: str) -> str:
    """String: the throttle's theoretical arrival time (GCRA), per function and key."""
    return f"{PREFIX}:throttle:{function_id}:{value}"


def rate_limit(function_id: str, value: str) -> str:
    """Zset: start times (ms) of recent runs, per function and key (sliding window)."""
    return f"{PREFIX}:ratelimit:{function_id}:{value}"


def debounce(function_id: str, value: str) -> str:
    """Hash {run, first}: the pending debounced run per function and key."""
    return f"{PREFIX}:debounce:{function_id}:{value}"


def batch(function_id: str, value: str) -> str:
    """Hash {run, count}: the batch being filled per function and key."""
    return f"{PREFIX}:batch:{function_id}:{value}"


def singleton(function_id: str, value: str) -> str:
    """String: the active run of a singleton function per key."""
    return f"{PREFIX}:singleton:{function_id}:{value}"
