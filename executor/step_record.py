"""A step record: what the steps API and the run page show of one step (metadata only; the
step's output stays in the run's memos). Written by the run scripts (`lib_record.lua` keeps
the first attempt's start across retries)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson


@dataclasses.dataclass
class StepRecord:
    id: str  # the hashed step id
    name: str
    op: str | None
    status: str  # Completed | Failed | Retrying | Sleeping | Waiting | Invoking | Reused
    attempts: int
    started_at: int | None
    ended_at: int | None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # error, until, ...

    @classmethod
    def of_op(cls, op: dict[str, Any], status: str, attempts: int, started: int, ended: int,
              **extra: Any) -> StepRecord:
        """The record of a step an SDK reported in an opcode."""
        return cls(str(op.get("id", "")), step_name(op), op.get("op"), status, attempts,
                   started, ended, extra)

    @classmethod
    def of_pause(cls, pause: dict[str, Any], status: str, now: int, **extra: Any) -> StepRecord:
        """The record of a wait or invoke step when its pause is resumed or times out."""
        return cls(pause["step"], pause.get("name") or pause["step"], pause.get("op"), status,
                   1, pause.get("created_at"), now, extra)

    def to_dict(self) -> dict[str, Any]:
        body = {"id": self.id, "name": self.name, "op": self.op, "status": self.status,
                "attempts": self.attempts, "started_at": self.started_at,
                "ended_at": self.ended_at}
        body.update(self.extra)
        return body

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


def step_name(op: dict[str, Any]) -> str:
    return str(op.get("displayName") or op.get("name") or op.get("id") or "")


def encode(record: StepRecord | None) -> bytes:
    """The script argument: '' means no record to write."""
    return record.to_json() if record is not None else b""


def step_times(op: dict[str, Any], started: int, now: int) -> tuple[int, int]:
    """When a step's body ran (ms): the op's `timing`, Go's interval.Interval as the SDKs
    send it (`a` its start, `b` its duration, both in ns), kept within [started, now] (the
    app's clock may differ from ours); without it, that whole span."""
    timing = op.get("timing")
    if isinstance(timing, dict):
        a, b = timing.get("a"), timing.get("b")
        if type(a) is int and type(b) is int and a >= 0 and b >= 0:
            begin = min(max(a // 1_000_000, started), now)
            return begin, min(max((a + b) // 1_000_000, begin), now)
    return started, now
