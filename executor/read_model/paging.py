"""Run queries, pages and cursors: newest first, a cursor names the last row shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .search import Search
from .views import ROW_FIELDS, _int, _iso, _text

LIVE_LOOKBACK_MS = 5000  # a run written late with an older score is still seen live


@dataclasses.dataclass
class RunQuery:
    function_id: str | None = None
    status: str | None = None
    since_ms: int | None = None  # started at or after
    until_ms: int | None = None  # started at or before
    search: Search | None = None
    stalled: bool = False  # only running runs flagged stalled (their own index)

    @property
    def filtered(self) -> bool:
        """True when the list shows less than every run."""
        return bool(self.status or self.search or self.function_id or self.stalled
                    or self.since_ms is not None or self.until_ms is not None)

    def accepts(self, row: dict[str, Any]) -> bool:
        """Function and status (the search needs the event: see `_search_rows`)."""
        if self.function_id and row.get("function_id") != self.function_id:
            return False
        if self.stalled and row.get("status") != "Running":
            return False
        return not (self.status and row.get("status") != self.status)


@dataclasses.dataclass
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None = None  # older rows exist: pass this back as `cursor`
    examined: int = 0  # rows read for this page
    partial: bool = False  # never set: every filter is answered from an index
    oldest_examined_ms: int | None = None
    total: int | None = None  # how many rows match the filter, in all


def make_cursor(score: float | int, member: str) -> str:
    return f"{int(score)}.{member}"


def split_cursor(cursor: str | None) -> tuple[int, str] | None:
    if not cursor:
        return None
    score, _, member = cursor.partition(".")
    if not member or not (score.isascii() and score.isdigit()):  # "²".isdigit() is true
        return None
    return int(score), member


def _row(run_id: str, score: float | None, values: Sequence[Any]) -> dict[str, Any] | None:
    fields = dict(zip(ROW_FIELDS, values, strict=True))
    if fields["status"] is None:
        return None  # gone
    started, ended = _int(fields["started_at"]), _int(fields["ended_at"])
    queue_ms, exec_ms = _int(fields["queue_ms"]), _int(fields["exec_ms"])
    return {
        "run_id": run_id,
        "function_id": _text(fields["function_id"] or b""),
        "app_id": _text(fields["app_id"] or b""),
        "event_id": _text(fields["event_id"] or b""),
        "status": _text(fields["status"]),
        "rerun_of": _text(fields["rerun_of"]) if fields["rerun_of"] else None,
        "started_ms": started,
        "ended_ms": ended,
        "duration_ms": (ended - started) if started and ended else None,
        "started_at": _iso(started),
        "ended_at": _iso(ended),
        "score": int(score) if score is not None else started,
        "event_name": None,
        "seq": _int(fields["seq"]),
        "waiting_reason": _text(fields["waiting_reason"]) if fields["waiting_reason"] else None,
        "queue_ms": queue_ms,
        "exec_ms": exec_ms,
        "stalled": bool(fields["stalled_since"]),
        "phase": None,  # set for running rows by `phases.add_phases`
        "elapsed_ms": None,
    }
