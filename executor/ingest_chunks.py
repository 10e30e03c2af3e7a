"""A request's events and runs, given to `lua/ingest.lua` in pieces.

Redis runs one script at a time and nothing else meanwhile, so one call carrying 5,000
events and their runs (hundreds of megabytes at the limits) would stall every worker and
every API call. The request is cut into pieces of at most MAX_EVENTS events or MAX_BYTES of
JSON; an event always travels with the runs it starts (the script skips the runs of an
event it finds already stored, which is what makes a retried request write nothing twice).
The request is acknowledged only after every piece is written, so nothing acknowledged is
lost; a crash between pieces leaves a prefix, and the sender's retry (same seeded ids)
completes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ulid import ULID

from . import keys

MAX_EVENTS = 200
MAX_BYTES = 1 << 20


def _run_bytes(run: dict[str, Any]) -> int:
    fields = run.get("fields") or {}
    # the event JSON dominates a run record; the rest is small and bounded
    return len(fields.get("event", "")) + len(fields.get("events", "")) + 2048


def split(events: list[dict[str, Any]], runs: list[dict[str, Any]], *,
          max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES
          ) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(events, runs) pieces in request order; every run with the event that starts it.
    Runs given without their events (reruns, runs started in their home shards) come last,
    in pieces of their own as bounded."""
    event_ids = {e["id"] for e in events}
    runs_of: dict[str, list[dict[str, Any]]] = {}
    unattached = []  # runs given without their event: they go last
    for run in runs:
        event_id = str((run.get("fields") or {}).get("event_id"))
        if event_id in event_ids:
            runs_of.setdefault(event_id, []).append(run)
        else:
            unattached.append(run)
    piece_events: list[dict[str, Any]] = []
    piece_runs: list[dict[str, Any]] = []
    size = 0
    for event in events:
        own = runs_of.pop(event["id"], [])
        cost = len(event["json"]) + sum(_run_bytes(r) for r in own)
        if piece_events and (len(piece_events) >= max_events or size + cost > max_bytes):
            yield piece_events, piece_runs
            piece_events, piece_runs, size = [], [], 0
        piece_events.append(event)
        piece_runs.extend(own)
        size += cost
    for run in unattached:
        cost = _run_bytes(run)
        if piece_runs and (len(piece_events) + len(piece_runs) >= max_events
                           or size + cost > max_bytes):
            yield piece_events, piece_runs
            piece_events, piece_runs, size = [], [], 0
        piece_runs.append(run)
        size += cost
    if piece_events or piece_runs:
        yield piece_events, piece_runs


async def ingest(call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                 payload: dict[str, Any], shard: int = 0) -> dict[str, Any]:
    """Run the ingest script over `payload` piece by piece (`call`: one piece's payload to
    the script's decoded answer); its answers merged as if it had been one call:
    {created, handed, repeated, intakes, clock} (see lua/ingest.lua). Each
    piece gets its own intake item id, in `shard` (where `call` runs the script), and the
    `starts` of its own events. The payload's `registry` check goes with the first piece
    only: when it finds the function set changed, nothing was written and the answer is
    {"stale": True} (the caller plans again)."""
    merged: dict[str, Any] = {"created": [], "handed": [], "repeated": {}, "intakes": [],
                              "clock": 0}
    check = {"registry": payload["registry"]} if payload.get("registry") else {}
    starts = payload.get("starts") or []  # runs of these events to start in other shards
    base = {k: v for k, v in payload.items() if k not in ("registry", "starts")}
    lease = dict(payload.get("lease") or {})
    for events, runs in split(payload["events"], payload["runs"]):
        ids = {e["id"] for e in events}
        mine = [start for start in starts if start[0] in ids]
        out = await call(
            {**base, **check, "events": events, "runs": runs,
             # the calls the pieces may hand over in all (the worker's slots held for them)
             **({"lease": {**lease, "handoff": max(0, lease.get("handoff", 0)
                                                    - len(merged["handed"]))}}
                if lease else {}),
             **({"starts": mine} if mine else {}),
             # in the shard the script runs in (keys.shard_of reads the id's first part)
             "intake_id": f"{keys.with_shard(str(ULID()), shard)}:intake"})
        if out.get("stale"):
            return {**merged, "stale": True}
        check = {}
        # Lua's cjson writes an empty list as {}
        merged["created"] += list(out.get("created") or [])
        merged["handed"] += list(out.get("handed") or [])
        merged["repeated"].update(out.get("repeated") or {})
        merged["clock"] = max(merged["clock"], int(out.get("clock") or 0))
        if out.get("intake"):
            merged["intakes"].append(out["intake"])
    return merged
