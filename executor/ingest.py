"""Event intake: store accepted events and start the runs they trigger.

`accept` writes the events and the runs they start in one script (an acknowledged event
always has its runs), with an `intake` queue item for what the events do to runs already
there; it then does that work at once (`pauses.Pauses` resumes the runs waiting for the
events and cancels the runs listening for them) and drops the item. The item is leased to
this process, so if it dies first a worker does the work when the lease expires. New runs'
first calls are leased straight to this process's worker when it has room. The API,
lifecycle events, cron ticks, invokes and reruns all come in through here.

Run ids are derived from (event id, function id): whatever retries an ingest, one event
starts at most one run of each function.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from ulid import ULID

from . import crashpoints, expressions, flow, indexes, ingest_chunks, keys, shards
from .events import FINISHED, IncomingEvent
from .pauses import Pauses, cancel_listener, match_keys
from .queue import FinishTimeout, Intake, QueueItem, StartTimeout
from .registry import FunctionConfig, Registry
from .scripts import Scripts
from .state import CallState, RunState, by_reference

log = logging.getLogger("inngest_like.executor")


def ingest_keys(shard: int) -> list[str]:
    """The first KEYS of ingest.lua in `shard`, the same in every call (`script_args` adds
    the rest)."""
    q = keys.queue(shard)
    return [keys.events(shard), keys.runs(shard), q.items, q.ready, q.wake,
            keys.runs_running(shard), q.leased, q.leases]


# the keys of a run record (`Ingest.new_run`) that ingest.lua takes as positions in KEYS
_RUN_KEYS = ("run_key", "runs_key", "fn_runs_key", "memos_key", "stack_key", "steps_key",
             "listeners_key")


def flow_reads(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (hash key, field) naming the run id that the starts of `runs` may write to:
    each debounce and batch hash's `run`. Read just before the script (`Ingest._holders`),
    so that it can be given those runs' keys. (A singleton needs no read: its field is
    there exactly while its holder runs, ingest.lua.)"""
    reads: dict[tuple[str, str], None] = {}
    for run in runs:
        plan = run.get("flow") or {}
        for kind in ("debounce", "batch"):
            if kind in plan:
                reads[plan[kind]["key"], "run"] = None
    return list(reads)


def script_args(shard: int, payload: dict[str, Any],
                holders: dict[tuple[str, str], str] | None = None
                ) -> tuple[list[str], list[bytes]]:
    """The KEYS and ARGV of ingest.lua in `shard` for `payload` (the records of
    `Ingest.new_run` and `_event_record`, which name keys): every key goes into KEYS once
    and the JSON gives its position instead (see the script's header). `holders`: the run
    id each of `flow_reads(payload["runs"])` held when read ('' or absent: none)."""
    names = ingest_keys(shard)
    at = {name: i for i, name in enumerate(names, 1)}

    def k(name: str) -> int:
        """`name`'s position in KEYS (1-based, as Lua's), added at the end when new."""
        if name not in at:
            names.append(name)
            at[name] = len(names)
        return at[name]

    def entries(found: list[list[str]]) -> list[list[Any]]:
        return [[k(key), score, member] for key, score, member in found]

    events = []
    for event in payload["events"]:
        e = {**event, "key": k(event["key"]), "name_key": k(event["name_key"]),
             "terms": entries(event.get("terms") or []),
             "match_keys": [k(m) for m in event.get("match_keys") or []]}
        for optional in ("user_key", "dedupe_key"):  # '' = none: absent for the script
            if event.get(optional):
                e[optional] = k(event[optional])
            else:
                e.pop(optional, None)
        events.append(e)
    runs = []
    for run in payload["runs"]:
        r = {**run, **{name: k(run[name]) for name in _RUN_KEYS if name in run},
             "idem_keys": [[k(key), ttl, label] for key, ttl, label in run.get("idem_keys") or []],
             # a cancel listener's `member` (its entry in the run's listeners set: its id and
             # address, pauses.cancel_listener) is data, no key
             "listeners": [{**listener, "key": k(listener["key"])}
                           for listener in run.get("listeners") or []],
             "flow": {kind: {**option, "key": k(option["key"])}
                      for kind, option in (run.get("flow") or {}).items()}}
        if run.get("ix"):
            ix = run["ix"]
            r["ix"] = {**ix, "running_fn": k(ix["running_fn"]),
                       "skipped_fn": k(ix["skipped_fn"]), "skipped": k(ix["skipped"]),
                       "stats": [k(key) for key in ix["stats"]],
                       "terms": entries(ix["terms"])}
        runs.append(r)
    # a held run of another shard (none should be) is not named: its key is of another
    # slot; the script counts it as ended
    expect = [[k(key), field, held, k(keys.run(held)) if held and keys.shard_of(held) == shard
               else 0]
              for (key, field), held in (holders or {}).items()]
    body = {**payload, "events": events, "runs": runs}
    if expect:
        body["expect"] = expect
    if payload.get("registry"):
        body["registry"] = {**payload["registry"], "key": k(payload["registry"]["key"])}
    return names, [orjson.dumps(body)]


MOVED_TRIES = 1000  # tries of a piece whose debounce or batch run changed meanwhile
EVENT_ID_TTL_S = 24 * 3600  # a sender's event id dedupes its repeats this long (as Inngest's)
INVOKED = "inngest/function.invoked"


def internal_event(name: str, data: dict[str, Any], internal_id: str, now_ms: int,
                   event_id: str | None = None) -> IncomingEvent:
    """An event the executor itself emits (lifecycle, invoke, cron): its internal id is
    deterministic, so emitting it twice stores it once and starts its runs once. (It has no
    sender id: its wire `id`, e.g. a cron tick's time, may be shared by several.)"""
    wire = {"name": name, "data": data, "id": event_id or internal_id, "ts": now_ms, "user": {}}
    return IncomingEvent(internal_id, wire, "")


def derived_run_id(event: IncomingEvent, fn_id: str, now_ms: int) -> str:
    """The id of the run `event` starts of `fn_id`: a ULID whose time is the event's (from
    its own ULID id, else its `ts`) and whose random part is a hash of both ids, so any
    retry of the ingest names the same run."""
    try:
        ms = ULID.from_str(event.internal_id).milliseconds
    except ValueError:
        ts = event.wire.get("ts")
        ms = ts if isinstance(ts, int) and 0 <= ts < 1 << 48 else now_ms
    digest = hashlib.sha256(f"{event.internal_id}\0{fn_id}".encode()).digest()[:10]
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + digest))


def _placed(events: list[dict[str, Any]], runs: list[dict[str, Any]]
            ) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[list[str]]]]:
    """Per event shard: the runs stored with their events (they live in the same shard),
    and the (event id, function id) of the runs their events start in another shard."""
    shard_of_event = {e["id"]: e["shard"] for e in events}
    local: dict[int, list[dict[str, Any]]] = {}
    away: dict[int, list[list[str]]] = {}
    for run in runs:
        event_id = run["fields"]["event_id"]
        shard = shard_of_event.get(event_id)
        if shard == run["shard"]:
            local.setdefault(shard, []).append(run)
        elif shard is not None:
            away.setdefault(shard, []).append([event_id, run["fields"]["function_id"]])
    return local, away


def _start_of(run: dict[str, Any]) -> tuple[str, str]:
    """(event id, function id): what names a run its event starts (an intake's `starts`)."""
    return run["fields"]["event_id"], run["fields"]["function_id"]


@dataclasses.dataclass(frozen=True)
class Handover:
    """What the ingest tells an eager first call (Worker.eager) once its scripts answered:
    its run was stored and its first call leased to this process, at Redis time `clock`.
    `item` and `state`: the first call and the run as stored when the event was planned
    again meanwhile (a sync): the eager call's answer is dropped and the call made again."""

    clock: int
    item: QueueItem | None = None
    state: CallState | None = None


Gate = asyncio.Future[Handover | None]  # None: the run was not handed over (answer dropped)


def _drop(gates: dict[str, Gate]) -> None:
    """Tell eager first calls their runs were not handed over: their answers are dropped."""
    for gate in gates.values():
        if not gate.done():
            gate.set_result(None)


class NotReplicated(Exception):
    """The events were stored on the primary, but fewer replicas than asked confirmed them in
    time (`--ack-replicas`): a failover now could lose them, so they are not acknowledged."""

    def __init__(self, acked: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(f"stored, but confirmed by {acked} of {wanted} Redis replicas within "
                         f"{timeout_ms} ms: send the events again (their ids are deduplicated)")


class Ingest:
    def __init__(self, redis: Redis, scripts: Scripts, registry: Registry, state: RunState,
                 clock: Callable[[], int]) -> None:
        self.redis = redis
        self.scripts = scripts
        self.registry = registry
        self.state = state
        self.clock = clock
        # set by the service: emits a run's end events (lifecycle.py); notes the end of a
        # run with none to emit (its metrics and root span)
        self.on_run_ended: Callable[[str], Awaitable[None]] | None = None
        self.run_ended_quietly: Callable[[dict[bytes, bytes]], None] = lambda fields: None
        # set by the service (operations.py): a new run's extra fields (its span context),
        # and what to note of the runs an accept created (metrics)
        self.run_fields: Callable[[str], dict[str, str]] = lambda run_id: {}
        self.on_runs_started: Callable[[list[str], list[dict[str, Any]]], None] = (
            lambda created, runs: None)
        self.pauses = Pauses(redis, state, clock, self.cancel)
        # set by the service when this process runs a worker: hold (and give back) up to n
        # of its free call slots, and start calls leased to it (new runs' first calls)
        self.claim: Callable[[int], int] = lambda wanted: 0
        self.unclaim: Callable[[int], None] = lambda count: None
        self.adopt: Callable[[list[QueueItem], str, dict[str, CallState]], None] = (
            lambda items, token, states: None)
        # ... and start a new run's first call before its script answers (Worker.eager)
        self.eager: Callable[[QueueItem, str, CallState], Gate | None] = (
            lambda item, token, state: None)
        self.lease_ms = 20_000  # the lease of what the ingest script hands this process
        self.ack_timeout_ms = 1000  # how long `accept(replicas=N)` waits for the replicas

    # -- starting runs -------------------------------------------------------------------
    def new_run(self, fn: FunctionConfig, events: list[IncomingEvent], now_ms: int,
                memos: list[tuple[str, bytes, bytes | None]] | None = None,
                rerun: bool = False) -> dict[str, Any]:
        """The ingest-script record that starts one run of `fn` for `events`. A rerun is
        started whatever idempotency, debounce and batching would decide (as Inngest's
        reruns are): the user asked for this run explicitly."""
        first = events[0]
        # the run lives in its function's home shard when its runs share flow-control state,
        # else in its event's (so that one script stores the event and starts the run)
        home = flow.home_shard(fn.id, fn.flow)
        if rerun:
            run_id = str(ULID())
            if home is not None:
                run_id = keys.with_shard(run_id, home)
        else:
            shard = home if home is not None else keys.shard_of(first.internal_id)
            run_id = keys.with_shard(derived_run_id(first, fn.id, now_ms), shard)
        shard = keys.shard_of(run_id)
        fields = {
            "run_id": run_id,
            "function_id": fn.id,
            "app_id": fn.app_id,
            "event_id": first.internal_id,
            "event": orjson.dumps(first.wire).decode(),
            "events": orjson.dumps([e.wire for e in events]).decode(),
            "status": "Running",
            "started_at": str(now_ms),
            "version": "-1",
            **self.run_fields(run_id),
        }
        wire = first.wire
        control = fn.flow
        item = {"run_id": run_id, "fn_id": fn.id, "step_id": "step", "attempt": 0,
                "max_attempts": fn.max_attempts, "kind": "call", "payload": {}, "ck": []}
        record: dict[str, Any] = {}
        try:
            plan, idem_keys = self._flow_plan(fn, wire, fields, shard)
            item["ck"] = flow.concurrency_slots(fn.id, control, wire)
            if rerun:
                idem_keys = []
                plan.pop("debounce", None)
                plan.pop("batch", None)
        except flow.KeyExpressionError as exc:
            # the rule: a run whose key cannot be computed does not start (it would share a
            # "None" key with unrelated events); it is recorded Skipped with the reason
            plan, idem_keys = {}, []
            record["skip"] = f"skipped: {exc}"
        listeners = [cancel_listener(run_id, fn.id, i, cancel, first, now_ms)
                     for i, cancel in enumerate(fn.cancel)]
        timers = []
        deadlines: list[tuple[str, StartTimeout | FinishTimeout]] = []
        if fn.timeout_start_ms is not None:
            deadlines.append(("timeout-start", StartTimeout(fn.timeout_start_ms)))
        if fn.timeout_finish_ms is not None:
            deadlines.append(("timeout-finish", FinishTimeout(fn.timeout_finish_ms)))
        for kind, deadline in deadlines:
            timer = QueueItem.of(deadline, id=f"{run_id}:{kind}", run_id=run_id, fn_id=fn.id)
            timers.append({"id": timer.id, "json": orjson.dumps(timer.to_dict()).decode(),
                           "due": now_ms + deadline.after_ms})
        record.update({
            "shard": shard,
            "run_key": keys.run(run_id),
            "runs_key": keys.event_runs(first.internal_id, shard),
            "fn_runs_key": keys.runs_of_function(fn.id, shard),
            "idem_keys": idem_keys,
            "run_id": run_id,
            "fields": fields,
            "item": item,
            # priority: seconds of head start among items due at the same time
            "due": now_ms - 1000 * flow.priority_s(control, wire),
            "flow": plan,
            "memos_key": keys.run_memos(run_id),
            "stack_key": keys.run_stack(run_id),
            "steps_key": keys.run_steps(run_id),
            "memos": [[h, m.decode()] for h, m, _ in memos or []],
            "records": [[h, r.decode()] for h, _, r in memos or [] if r],
            "listeners_key": keys.run_listeners(run_id),
            "listeners": listeners,
            "timers": timers,
            "ix": indexes.start_plan(fn.id, now_ms, first.wire, shard),
        })
        return record

    @staticmethod
    def _flow_plan(fn: FunctionConfig, wire: dict[str, Any], fields: dict[str, Any],
                   shard: int) -> tuple[dict[str, Any], list[list[Any]]]:
        """What ingest.lua decides for this run's start: idempotency keys and the flow
        options' keys, in `shard`, the function's home shard (where the run is). Raises
        flow.KeyExpressionError when a key expression fails."""
        control = fn.flow
        idem_keys: list[list[Any]] = []
        if control.idempotency:
            value = flow.evaluate_key(control.idempotency, wire, "idempotency key")
            idem_keys.append([keys.idempotency(fn.id, f"key:{value}", shard),
                              max(1, control.idempotency_ms // 1000),
                              f"idempotency key {value!r} already used"])
        plan: dict[str, Any] = {}
        if control.rate_limit:
            rate = control.rate_limit
            value = flow.evaluate_key(rate.key, wire, "rateLimit.key")
            plan["rate"] = {"key": keys.rate_limit(fn.id, value, shard), "limit": rate.limit,
                            "period": rate.period_ms}
        if control.throttle:
            t = control.throttle
            value = flow.evaluate_key(t.key, wire, "throttle.key")
            plan["throttle"] = {"key": keys.throttle(fn.id, value, shard), "limit": t.limit,
                                "period": t.period_ms, "burst": t.burst}
        if control.singleton:
            value = flow.evaluate_key(control.singleton.key, wire, "singleton.key")
            # the run holds its singleton as a field of the shard's singletons hash; its
            # hash names the field, for ending the run to free it (lib_end_run.lua)
            name = keys.singleton_name(fn.id, value)
            plan["singleton"] = {"key": keys.singletons(shard), "name": name,
                                 "mode": control.singleton.mode}
            fields["singleton"] = name
        if control.debounce:
            d = control.debounce
            value = flow.evaluate_key(d.key, wire, "debounce.key")
            plan["debounce"] = {"key": keys.debounce(fn.id, value, shard),
                                "period": d.period_ms}
            if d.timeout_ms is not None:  # absent, not null: Lua's cjson.null is truthy
                plan["debounce"]["timeout"] = d.timeout_ms
        if control.batch and expressions.matches(control.batch.condition, {"event": wire}):
            b = control.batch  # an event failing `if` runs alone, at once
            value = flow.evaluate_key(b.key, wire, "batchEvents.key")
            plan["batch"] = {"key": keys.batch(fn.id, value, shard), "max": b.max_size,
                             "timeout": b.timeout_ms}
        return plan, idem_keys

    def _runs_for(self, event: IncomingEvent, now_ms: int) -> list[dict[str, Any]]:
        if event.wire["name"] == INVOKED:
            # step.invoke: start the target by id, whatever its triggers
            target = ((event.wire["data"] or {}).get("_inngest") or {}).get("fn_id")
            fn = self.registry.functions.get(str(target))
            return [self.new_run(fn, [event], now_ms)] if fn else []
        return [self.new_run(fn, [event], now_ms)
                for fn in self.registry.match(event.wire)]

    async def accept(self, events: list[IncomingEvent], *,
                     runs: list[dict[str, Any]] | None = None, replicas: int = 0) -> list[str]:
        """Store events, start the runs they trigger (or exactly `runs`), then resume and
        cancel what waits for them. Returns the ids of runs created. An event whose sender
        id was seen in the last 24 h is not stored again: its `internal_id` is set to the
        id stored then (what the API answers). With `replicas`, raises NotReplicated (after
        doing everything else) unless that many replicas confirmed every write in time.

        Each event is stored in its shard with the runs that live there (all of them, but
        those of functions whose shared flow-control state lives in another shard). Those
        are started next, in their home shards, and are named in the events' intake item
        meanwhile, so that a crash in between loses none of them."""
        now = self.clock()
        planned = runs is None  # we pick the functions: the script checks we saw them all
        token = str(ULID())
        acked: list[int] = []
        for event in events:
            if event.user_id:  # beside the key that remembers the sender's id (keys.py)
                event.internal_id = keys.with_shard(event.internal_id,
                                                    keys.shard_by_hash(event.user_id))

        async def store(shard: int, piece: dict[str, Any]) -> dict[str, Any]:
            return await self._store(shard, piece, replicas, acked)

        event_records = [self._event_record(e, now) for e in events]
        shards = sorted({record["shard"] for record in event_records})
        # worker slots held from before the scripts may hand this process first calls until
        # those calls are adopted: many events accepted at once never start more calls than
        # the worker has slots
        claimed = 0
        gates: dict[str, Gate] = {}  # eager first calls, by item id
        replanned = False  # a stale pass: the eager calls were made for an older plan
        outs: list[dict[str, Any]] = []  # the answers of the pieces written
        try:
            planned_runs: dict[tuple[str, str], dict[str, Any]] = {}  # (event, function) -> run
            for _ in range(5):
                if planned:
                    runs = [r for e in events for r in self._runs_for(e, now)]
                assert runs is not None
                planned_runs.update({_start_of(r): r for r in runs})
                local, remote = _placed(event_records, runs)
                # slots for the calls still to hand over (a pass after a stale one may follow
                # pieces that handed some already)
                handed_so_far = sum(len(out["handed"]) for out in outs)
                self.unclaim(claimed - handed_so_far)
                claimed = handed_so_far + self.claim(len(runs))
                free = claimed - handed_so_far
                if planned and not replanned and len(shards) == 1 and free == len(runs):
                    # the first pass, one script, and every first call may be handed to us
                    self._start_eagerly(events, runs, token, now, gates)
                    if gates:
                        await asyncio.sleep(0)  # the calls go out first, the script next
                        for event in events:  # tests: die with the calls out, nothing stored
                            crashpoints.reach("eager-sent", event.wire["name"])
                pieces = [(shard, {
                    "now": now,
                    "lease": {"token": token, "expiry": now + self.lease_ms,
                              "handoff": free // max(1, len(shards))},
                    # the function set the runs were planned with: a sync since then makes the
                    # script write nothing and say so (one round trip fewer than reading the
                    # version first, on every event)
                    "registry": {"key": keys.registry_version(shard),
                                 "version": str(self.registry.version)} if planned else None,
                    "events": [e for e in event_records if e["shard"] == shard],
                    "runs": local.get(shard, []),
                    "starts": remote.get(shard, []),
                }) for shard in shards]
                calls = [ingest_chunks.ingest(functools.partial(store, shard), payload, shard)
                         for shard, payload in pieces]
                # one shard (the usual store, or a request of one event): no task to gather
                answers = ([await calls[0]] if len(calls) == 1
                           else list(await asyncio.gather(*calls)))
                outs += [out for out in answers if not out.get("stale")]
                stale = [shard for (shard, _), out in zip(pieces, answers, strict=True)
                         if out.get("stale")]
                if not stale:
                    break
                replanned = True
                # the shards that wrote nothing are planned again; the others are done (their
                # events are found stored and skipped if planned again all the same)
                shards = stale
                await self.registry.refresh()
            else:
                raise RuntimeError("the function set changed five times while these events were "
                                   "being stored; try again")
            for event in events if gates else []:  # tests: die stored, the answers not acted on
                crashpoints.reach("eager-stored", event.wire["name"])
            # runs started away from their events, in their home shards: those the written
            # intakes name (the script names only the runs of events it stored, as planned when
            # it wrote them), and runs given without their events (reruns)
            homes: dict[int, list[dict[str, Any]]] = {}
            given = {e["id"] for e in event_records}
            away = [planned_runs[event_id, fn_id] for out in outs for raw in out["intakes"]
                    for event_id, fn_id in Intake(**orjson.loads(raw)["payload"]).starts or []]
            away += [r for r in runs if r["fields"]["event_id"] not in given]
            for record in away:
                homes.setdefault(record["shard"], []).append(record)
            if homes:
                outs += await asyncio.gather(*(
                    ingest_chunks.ingest(functools.partial(store, shard), {
                        "now": now, "events": [], "runs": records,
                        "lease": {"token": token, "expiry": now + self.lease_ms, "handoff": 0}},
                        shard)
                    for shard, records in sorted(homes.items())))
            created: list[str] = [run_id for out in outs for run_id in out["created"]]
            self.on_runs_started(created, list(planned_runs.values()) or runs)
        finally:
            self.unclaim(claimed)
            try:  # an eager call whose run was handed over goes on, with the script's clock
                handed = [QueueItem.from_json(raw) for out in outs for raw in out["handed"]]
                clock = max((out["clock"] for out in outs), default=0)
                states = (self._first_states(handed, list(planned_runs.values()) or runs or [],
                                             clock) if handed else {})
                for item in handed:
                    if item.id in gates and not gates[item.id].done():
                        gates[item.id].set_result(
                            Handover(clock, item, states.get(item.id)) if replanned
                            else Handover(clock))
            finally:  # the others' runs were not stored: their answers are dropped
                _drop(gates)
        handed = [item for item in handed if item.id not in gates]
        if handed:
            self.adopt(handed, token, states)
        repeated = {k: v for out in outs for k, v in out["repeated"].items()}
        for event in events:
            event.internal_id = repeated.get(event.internal_id, event.internal_id)
        for raw in (raw for out in outs for raw in out["intakes"]):
            item = QueueItem.from_json(raw)
            intake = Intake(**item.payload)
            mine = [e for e in events if e.internal_id in set(intake.events or [])]
            for event in mine:  # tests: die here, between storing the events and their intake
                crashpoints.reach("intake", event.wire["name"])
            # its starts were just made above
            await self.follow_up(dataclasses.replace(intake, starts=[]), mine)
            await self.state.drop(item, token, self.clock())
        if acked and min(acked) < replicas:
            raise NotReplicated(min(acked), replicas, self.ack_timeout_ms)
        return created

    def _start_eagerly(self, events: list[IncomingEvent], runs: list[dict[str, Any]],
                       token: str, now: int, gates: dict[str, Gate]) -> None:
        """Start the first calls of the planned runs the script will hand to this process
        before the script runs (Worker.eager): the first line of a function runs while its
        run is being stored. Only runs the event's own script starts whatever it finds: in
        the event's shard, no flow control, no idempotency key, no concurrency limit, due
        now, not a rerun, an event no sender id may have stored already, and state small
        enough to go in the call (no `use_api`: the run cannot be read back yet). Their
        gates go into `gates` by item id as they start (the caller resolves every one)."""
        sender_ids = {e.internal_id for e in events if e.user_id}
        for record in runs:
            item_dict, fields = record["item"], record["fields"]
            if (record.get("skip") or record["idem_keys"] or record["flow"] or item_dict["ck"]
                    or record["due"] > now or record["memos"]
                    or fields["event_id"] in sender_ids
                    or record["shard"] != keys.shard_of(fields["event_id"])):
                continue
            state = self._first_state(record, 0)
            if by_reference(state):
                continue
            # the id ingest.lua gives a run's first call
            item = QueueItem(id=f"{record['run_id']}:1", **item_dict)
            gate = self.eager(item, token, state)
            if gate is None:
                break  # the worker is busy: the rest wait for the script
            gates[item.id] = gate

    def _first_state(self, record: dict[str, Any], clock: int) -> CallState:
        """A new run's state as the ingest script writes it (its fields, the memos a rerun
        reuses): its first call need not read it back."""
        run = {k.encode(): str(v).encode() for k, v in record["fields"].items()}
        run[b"seq"] = b"1"
        memos = {h.encode(): m.encode() for h, m in record.get("memos") or []}
        return CallState(run, memos, list(memos), self.registry.version or 0, clock)

    def _first_states(self, items: list[QueueItem], runs: list[dict[str, Any]],
                      clock: int) -> dict[str, CallState]:
        """The states of new runs whose first calls the script handed to this process, as it
        wrote them (the run's fields, the memos a rerun reuses), by item id: their calls
        need not read them back."""
        records = {r["run_id"]: r for r in runs}
        return {item.id: self._first_state(records[item.run_id], clock)
                for item in items if item.run_id in records}

    def _event_record(self, event: IncomingEvent, now: int) -> dict[str, Any]:
        """What ingest.lua stores for one event, in the event's shard."""
        shard = keys.shard_of(event.internal_id)
        name = event.wire["name"]
        return {
            "shard": shard,
            "key": keys.event(event.internal_id),
            "name_key": keys.events_by_name(name, shard),
            "id": event.internal_id,
            "ts": now,
            "json": orjson.dumps({**event.wire, "internal_id": event.internal_id}).decode(),
            "dedupe_key": keys.event_dedupe(event.user_id) if event.user_id else "",
            "dedupe_ttl": EVENT_ID_TTL_S,
            # the script sees whether a pause may wait for it: a pause of any shard marks
            # every shard's path set of its name (pauses.mark_waited); an invoke's end event
            # names the caller's pause, in the caller's shard
            "match_keys": match_keys(name, shard),
            "match": keys.shard_count() > 1 and name == FINISHED
            and bool((event.wire.get("data") or {}).get("correlation_id")),
            **indexes.event_plan(event.wire, shard),
        }

    async def runs_of_event(self, event_id: str) -> list[str]:
        """The ids of the runs an event started, from every shard."""
        found = await shards.each_shard(self.redis, lambda pipe, shard: pipe.lrange(
            keys.event_runs(event_id, shard), 0, -1))
        return [run_id.decode() for shard_runs in found for run_id in shard_runs]

    async def _store(self, shard: int, piece: dict[str, Any], replicas: int = 0,
                     acked: list[int] | None = None) -> dict[str, Any]:
        """One piece (ingest_chunks) through ingest.lua in `shard`: its answer. When its runs
        use debounce, batch or singleton, the runs those name are read first, for the
        script to be given their keys; one written meanwhile makes the script write nothing
        and answer `moved`, and the piece goes again, read again (the window is one round
        trip, so a few tries suffice). With `replicas`, the WAIT's count goes to `acked`."""
        reads = flow_reads(piece["runs"])
        holders = await self._holders(reads)
        for _ in range(MOVED_TRIES):
            script_keys, args = script_args(shard, piece, holders)
            if replicas:
                answer, count = await self._store_replicated(script_keys, args, replicas)
            else:
                answer = await self.scripts("ingest", script_keys, args)
            out: dict[str, Any] = orjson.loads(answer)
            if not out.get("moved"):
                if replicas and acked is not None:
                    acked.append(count)
                return out
            # another request started or joined a run of the same key meanwhile: go again
            # with the runs the script found (each round some request gets through)
            holders = dict(zip(holders, out["holders"], strict=True))
        raise RuntimeError("the pending runs of these events' debounce or batch changed "
                           f"{MOVED_TRIES} times while they were being stored; try again")

    async def _holders(self, reads: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The run id each (hash key, field) of `flow_reads` names now ('' = none): one
        round trip, none without reads."""
        if not reads:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, field in reads:
                pipe.hget(key, field)
            found = await pipe.execute()
        return {read: value.decode() if value else "" for read, value in
                zip(reads, found, strict=True)}

    async def _store_replicated(self, script_keys: list[str], args: list[bytes],
                                replicas: int) -> tuple[Any, int]:
        """The ingest script, then WAIT on the same connection (WAIT covers the writes of
        the connection it runs on, so both go in one pipeline): (its answer, replicas that
        confirmed)."""

        def fill(pipe: Any) -> None:
            self.scripts.queue_in(pipe, "ingest", script_keys, args)
            pipe.execute_command("WAIT", replicas, self.ack_timeout_ms)

        answer, count = await self.scripts.pipelined(self.redis, fill)
        return answer, int(count)

    async def follow_up(self, intake: Intake, events: list[IncomingEvent] | None = None
                        ) -> None:
        """What accepted events do to runs: start the runs that live away from their events
        (if the process that stored the events died first), cancel the runs a singleton
        replaces, then offer the events to the pauses waiting for them. `events`: the
        events in memory (the caller's fast path); else they are read back from Redis
        (a worker redoing the intake of a process that died)."""
        if intake.starts:
            await self._start_away(intake.starts)
        for replaced in intake.replaced or []:  # singleton in cancel mode
            await self.cancel(replaced, "replaced by a newer run (singleton mode cancel)")
        if events is None:
            events = await self._stored(list(intake.events or []))
        if events:
            await self.pauses.match(events)

    async def _start_away(self, starts: list[list[str]]) -> None:
        """Start the runs (event id, function id) an intake names, as the process that
        stored their events would have: their ids derive from both, so a run it started
        before it died is not started again."""
        stored = {e.internal_id: e for e in await self._stored(sorted({s[0] for s in starts}))}
        await self.registry.refresh()  # a function synced since this process last looked
        now = self.clock()
        records = [self.new_run(self.registry.functions[fn_id], [stored[event_id]], now)
                   for event_id, fn_id in starts
                   if event_id in stored and fn_id in self.registry.functions]
        by_shard: dict[int, list[dict[str, Any]]] = {}
        for record in records:
            by_shard.setdefault(record["shard"], []).append(record)
        for shard, shard_records in sorted(by_shard.items()):
            await ingest_chunks.ingest(functools.partial(self._store, shard),
                                       {"now": now, "events": [], "runs": shard_records}, shard)

    async def _stored(self, event_ids: list[str]) -> list[IncomingEvent]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for event_id in event_ids:  # one GET each: an MGET may not span shards
                pipe.get(keys.event(event_id))
            raws = await pipe.execute()
        found = []
        for internal_id, raw in zip(event_ids, raws, strict=True):
            if raw is None:
                continue  # deleted by retention meanwhile: nothing can wait for it
            wire = orjson.loads(raw)
            wire.pop("internal_id", None)
            found.append(IncomingEvent(internal_id, wire, ""))
        return found

    # -- ending runs ----------------------------------------------------------------------
    async def run_ended(self, run_id: str) -> None:
        if self.on_run_ended is not None:
            await self.on_run_ended(run_id)

    async def cancel(self, run_id: str, message: str, unless_started: str = "",
                     event_id: str = "") -> bool:
        """Cancel a running run (API, cancel event, timeouts); False if it was not running
        (or, with `unless_started`, that item of it was leased or is gone). `event_id`: the
        event that cancelled it (kept in the reason, so the run page links to it)."""
        reason: dict[str, Any] = {"error": message, "name": "FunctionCancelled",
                                  "message": message}
        if event_id:
            reason["event_id"] = event_id
        if await self.state.cancel(run_id, self.clock(), reason, unless_started) != 1:
            return False
        await self.run_ended(run_id)
        return True
