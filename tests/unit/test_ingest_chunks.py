"""Issue 10.6: a request's events reach the ingest script in bounded pieces, each event
with the runs it starts (what keeps a retried request from starting runs twice)."""

from __future__ import annotations

from typing import Any

import orjson

from executor import ingest_chunks


def event(i: int, size: int = 10) -> dict[str, Any]:
    return {"id": f"e{i}", "json": "x" * size}


def run(event_id: str, n: int = 0) -> dict[str, Any]:
    return {"run_id": f"{event_id}-r{n}", "fields": {"event_id": event_id, "event": "{}",
                                                     "events": "[]"}}


def test_pieces_respect_both_limits_and_keep_runs_with_their_event() -> None:
    events = [event(i) for i in range(25)]
    runs = [run(f"e{i}", n) for i in range(25) for n in range(2)]
    pieces = list(ingest_chunks.split(events, runs, max_events=10, max_bytes=1 << 20))
    assert [len(e) for e, _ in pieces] == [10, 10, 5]
    for piece_events, piece_runs in pieces:
        ids = {e["id"] for e in piece_events}
        assert {r["fields"]["event_id"] for r in piece_runs} == ids
        assert len(piece_runs) == 2 * len(piece_events)
    assert [e["id"] for p, _ in pieces for e in p] == [e["id"] for e in events]  # in order


def test_bytes_bound_a_piece_but_a_big_event_still_travels_whole() -> None:
    events = [event(0, 600), event(1, 600), event(2, 5000)]
    pieces = list(ingest_chunks.split(events, [], max_events=100, max_bytes=1000))
    assert [[e["id"] for e in p] for p, _ in pieces] == [["e0"], ["e1"], ["e2"]]


def test_runs_without_their_event_go_last() -> None:
    pieces = list(ingest_chunks.split([], [run("elsewhere")]))
    assert pieces == [([], [run("elsewhere")])]


def test_runs_without_their_events_are_cut_into_pieces_too() -> None:
    """The runs a request starts in their functions' home shards travel without their
    events: bounded like the rest, not all in one script call."""
    away = [run(f"elsewhere{i}") for i in range(25)]
    pieces = list(ingest_chunks.split([event(0)], [run("e0"), *away], max_events=10))
    assert [(len(e), len(r)) for e, r in pieces] == [(1, 9), (0, 10), (0, 7)]
    assert [r for _, p in pieces for r in p] == [run("e0"), *away]


async def test_each_piece_names_the_starts_of_its_own_events() -> None:
    seen: list[dict[str, Any]] = []

    async def call(piece: dict[str, Any]) -> dict[str, Any]:
        seen.append(piece)
        return {"created": {}, "handed": {}, "repeated": {}}

    events = [event(i) for i in range(450)]
    starts = [["e5", "f"], ["e250", "f"], ["e449", "g"]]
    await ingest_chunks.ingest(call, {"now": 7, "events": events, "runs": [],
                                      "starts": starts})
    assert [piece.get("starts", []) for piece in seen] == [
        [["e5", "f"]], [["e250", "f"]], [["e449", "g"]]]


async def test_answers_merge_as_one_call() -> None:
    seen: list[dict[str, Any]] = []

    async def call(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        first = payload["events"][0]["id"] if payload["events"] else ""
        return {
            "created": [r["run_id"] for r in payload["runs"]] or {},  # Lua's empty list: {}
            "handed": {}, "repeated": {first: f"old-{first}"} if first else {},
            **({"intake": f'{{"id": "{payload["intake_id"]}"}}'} if first else {})}

    events = [event(i) for i in range(5)]
    runs = [run(f"e{i}") for i in range(5)]
    out = await ingest_chunks.ingest(call, {"now": 7, "events": events, "runs": runs})
    assert len(seen) == 1 and seen[0]["now"] == 7
    assert out["created"] == [f"e{i}-r0" for i in range(5)]
    assert out["repeated"] == {"e0": "old-e0"} and len(out["intakes"]) == 1
    big = [event(i) for i in range(450)]
    out = await ingest_chunks.ingest(call, {"now": 7, "events": big, "runs": []})
    assert len(seen) == 1 + 3  # 200 + 200 + 50
    assert out["created"] == [] and out["handed"] == []
    assert out["repeated"] == {"e0": "old-e0", "e200": "old-e200", "e400": "old-e400"}
    # each piece's intake item has its own id
    assert len({orjson.loads(i)["id"] for i in out["intakes"]}) == 3
