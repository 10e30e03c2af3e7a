"""Presentation helpers for the dashboard: durations and times, truncated pretty JSON, the
run timeline (CSS bars on a time axis) and the functions' small SVG charts.

Everything here returns plain data (numbers, strings) for the autoescaped templates: no HTML
is built in Python, so nothing user-supplied can bypass escaping.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from executor import times

PREVIEW_CHARS = 4000  # a step output / error shown inline; the rest behind "see all"


def duration(ms: int | float | None) -> str:
    if ms is None:
        return ""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {sec} s" if sec else f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(ms: int | None) -> str:
    """A UTC time as `2024-05-01 12:00:03`."""
    return times.display(ms) if ms else ""


def iso(ms: int | None) -> str:
    return times.rfc3339(ms) if ms else ""


def size(n: int | None) -> str:
    if not n:
        return "0 B"
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.1f} MiB"


@dataclasses.dataclass
class Pretty:
    text: str
    truncated: bool
    chars: int

    @property
    def short(self) -> bool:
        return self.chars <= 400 and self.text.count("\n") <= 12


def pretty(value: Any, limit: int = PREVIEW_CHARS) -> Pretty:
    """Indented JSON, cut at `limit` characters (the page links to the whole value)."""
    try:
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = repr(value)
    if len(text) > limit:
        return Pretty(text[:limit], True, len(text))
    return Pretty(text, False, len(text))


def error_text(error: Any) -> str:
    if isinstance(error, dict):
        name = error.get("name") or "Error"
        message = error.get("message") or error.get("error") or ""
        return f"{name}: {message}" if message else str(name)
    return "" if error is None else str(error)


# -- the run timeline -----------------------------------------------------------------------
@dataclasses.dataclass
class Segment:
    left: float  # percent of the axis
    width: float
    kind: str  # css class: Completed, Failed, Retrying, Backoff, Sleeping, Waiting, ...
    title: str


@dataclasses.dataclass
class Lane:
    label: str
    status: str
    segments: list[Segment]
    note: str
    anchor: str = ""  # the step's id on the page


@dataclasses.dataclass
class Timeline:
    lanes: list[Lane]
    ticks: list[tuple[float, str]]  # (percent, label)
    span_ms: int
    start_ms: int


def _pct(t: int, t0: int, span: int) -> float:
    return round(min(100.0, max(0.0, (t - t0) * 100 / span)), 3)


def _segment(start: int, end: int, t0: int, span: int, kind: str, title: str) -> Segment:
    left = _pct(start, t0, span)
    right = _pct(max(start, end), t0, span)
    width = max(right - left, 0.6)
    left = min(left, 100 - width)
    return Segment(left, round(width, 3), kind, title)


def timeline(detail: dict[str, Any], now_ms: int) -> Timeline:
    """Bars on one time axis from the run's start to its end (or now): the run, each step
    (retried attempts and the backoff before the next one, sleeps, waits, invokes), and the
    run's next call when it is queued or in flight."""
    run, steps, queue = detail["run"], detail["steps"], detail["queue"]
    t0 = run["started_ms"] or now_ms
    t1 = run["ended_ms"] or now_ms
    for step in steps:
        for t in (step["started_ms"], step["ended_ms"]):
            if t and t <= now_ms:
                t1 = max(t1, t)
    span = max(t1 - t0, 1)
    lanes = [Lane("Run", run["status"], [_segment(t0, t1, t0, span, run["status"],
                                                  f"run {run['status'].lower()}")],
                  duration(t1 - t0))]
    for step in steps:
        start = step["started_ms"] or t0
        end = step["ended_ms"] or start
        status = step["status"]
        attempts = step["attempts"]
        segments: list[Segment] = []
        note = ""
        if step.get("reused_from"):
            segments.append(_segment(t0, t0, t0, span, "Reused", "memo reused from an earlier run"))
            note = "reused"
        elif status == "Retrying":
            segments.append(_segment(start, end, t0, span, "Retrying",
                                     f"{attempts} failed attempt(s)"))
            retry_at = step["retry_at_ms"] or end
            segments.append(_segment(end, min(retry_at, now_ms), t0, span, "Backoff",
                                     f"backoff, next attempt at {clock(retry_at)} UTC"))
            note = f"attempt {attempts} failed; retry at {clock(retry_at)}"
        elif status in ("Sleeping", "Waiting", "Invoking"):
            segments.append(_segment(start, now_ms, t0, span, status, status.lower()))
            until = step["until_ms"] or step["ended_ms"]
            note = f"until {clock(until)}" if until else status.lower()
        elif step.get("interrupted"):
            segments.append(_segment(start, run["ended_ms"] or now_ms, t0, span, status,
                                     f"{step['interrupted'].lower()} when the run ended"))
            note = f"was {step['interrupted'].lower()}"
        else:
            if step["op"] and str(step["op"]).lower() == "sleep" and step["until_ms"]:
                end = step["until_ms"]
                status_kind = "Sleeping"
            else:
                status_kind = status or "Completed"
            if attempts > 1:
                # earlier attempts failed: the bar spans from the first attempt to the end,
                # hatched to say it includes retries
                segments.append(_segment(start, end, t0, span, f"{status_kind} retried",
                                         f"{attempts} attempts"))
            else:
                segments.append(_segment(start, end, t0, span, status_kind, status_kind.lower()))
            note = duration(end - start)
            if attempts > 1:
                note += f" · {attempts} attempts"
        lanes.append(Lane(step["name"], status, segments, note, f"step-{step['hash']}"))
    state = queue.get("state")
    if state in ("queued", "running", "held"):
        last_end = max([s["ended_ms"] or 0 for s in steps if (s["ended_ms"] or 0) <= now_ms]
                       + [t0])
        since = queue.get("due_ms") or last_end if state == "queued" else last_end
        kind = {"queued": "Queued", "running": "Running", "held": "Queued"}[state]
        label = {"queued": "next call (queued)", "running": "call in flight",
                 "held": "next call (held by flow control)"}[state]
        lanes.append(Lane(label, kind, [_segment(min(since, now_ms), now_ms, t0, span, kind,
                                                 label)], duration(now_ms - since)))
    ticks = [(pct, "+" + duration(span * pct / 100) if pct else "0")
             for pct in (0.0, 25.0, 50.0, 75.0, 100.0)]
    return Timeline(lanes, ticks, span, t0)


def waiting_reasons(detail: dict[str, Any], now_ms: int) -> list[str]:
    """Why a running run is not making progress right now, in words."""
    if detail["run"]["status"] != "Running":
        return []
    out = []
    for step in detail["steps"]:
        status = step["status"]
        if status == "Waiting":
            text = f"Step “{step['name']}” is waiting for event {step['waiting_for']}"
            if step["expression"]:
                text += f" matching {step['expression']}"
            text += f", until {clock(step['ended_ms'])} UTC (then it times out)."
            out.append(text)
        elif status == "Sleeping":
            out.append(f"Step “{step['name']}” is sleeping until "
                       f"{clock(step['until_ms'] or step['ended_ms'])} UTC.")
        elif status == "Invoking":
            out.append(f"Step “{step['name']}” is invoking function {step['function']}; it "
                       f"gives up at {clock(step['ended_ms'])} UTC.")
        elif status == "Retrying":
            out.append(f"Step “{step['name']}” failed attempt {step['attempts']} "
                       f"({error_text(step['error'])}); next attempt at "
                       f"{clock(step['retry_at_ms'])} UTC.")
    queue = detail["queue"]
    state = queue.get("state")
    if state == "queued":
        out.append(f"The next call is queued since {clock(queue['due_ms'])} UTC, waiting for "
                   f"a worker.")
    elif state == "scheduled" and not out:
        out.append(f"The next call is scheduled for {clock(queue['due_ms'])} UTC "
                   f"(attempt {queue['attempt'] + 1}).")
    elif state == "running":
        out.append("A call to the app is in flight.")
    elif state == "held":
        out.append("The next call is held back by flow control (a concurrency limit).")
    return out


# -- functions: a small chart of runs per hour ------------------------------------------------
@dataclasses.dataclass
class Bar:
    x: float
    width: float
    ok_y: float
    ok_h: float
    failed_y: float
    failed_h: float
    title: str


def hourly_chart(buckets: list[list[int]], width: int = 240, height: int = 40) -> list[Bar]:
    """24 stacked bars (completed-or-running below, failed on top), oldest hour first."""
    peak = max([ok + failed for ok, failed in buckets] + [1])
    slot = width / max(len(buckets), 1)
    out = []
    for i, (ok, failed) in enumerate(buckets):
        ok_h = ok * height / peak
        failed_h = failed * height / peak
        hours_ago = len(buckets) - 1 - i
        when = "this hour" if hours_ago == 0 else f"{hours_ago} h ago"
        out.append(Bar(round(i * slot + 1, 2), round(slot - 2, 2),
                       round(height - ok_h, 2), round(ok_h, 2),
                       round(height - ok_h - failed_h, 2), round(failed_h, 2),
                       f"{when}: {ok + failed} runs, {failed} failed"))
    return out


def usd(value: float | None) -> str:
    """`$0.0042`, `$12.50`: four decimals under a dollar (LLM calls cost fractions of one)."""
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def spend_chart(usage: dict[str, Any], width: int = 240, height: int = 40) -> list[Bar]:
    """One bar per day of a function's spend (`Usage.function_usage`), oldest first."""
    days = usage.get("per_day") or []
    peak = max([d["cost_usd"] for d in days] + [1e-12])
    slot = width / max(len(days), 1)
    out = []
    for i, day in enumerate(days):
        h = day["cost_usd"] * height / peak
        out.append(Bar(round(i * slot + 1, 2), round(slot - 2, 2), round(height - h, 2),
                       round(h, 2), 0, 0, f"{iso(day['day'])[:10]}: {usd(day['cost_usd'])}, "
                       f"{day['tokens']} tokens"))
    return out


def function_options(config: dict[str, Any]) -> list[tuple[str, str]]:
    """A function's options as (name, compact JSON) pairs, retries first."""
    out = []
    steps = config.get("steps") or {}
    for step in steps.values() if isinstance(steps, dict) else []:
        retries = (step.get("retries") or {}).get("attempts") if isinstance(step, dict) else None
        if retries is not None:
            out.append(("retries", str(retries)))
            break
    skip = {"id", "name", "triggers", "steps", "slug"}
    for key in sorted(config):
        if key in skip or config[key] in (None, [], {}):
            continue
        out.append((key, orjson.dumps(config[key]).decode()))
    return out
