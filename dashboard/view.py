"""Presentation helpers for the dashboard: durations and times, truncated pretty JSON, the
run timeline (CSS bars on a time axis) and the functions' small SVG charts.

Everything here returns plain data (numbers, strings) for the autoescaped templates: no HTML
is built in Python, so nothing user-supplied can bypass escaping.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from executor import metrics_store, times

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

    @property
    def summary(self) -> str:
        """The lane in words, for screen readers (the bars are decorative)."""
        return "; ".join(s.title for s in self.segments)


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


ATTEMPT_KIND = {"Retrying": "Retrying", "Failed": "Failed", "Completed": "Completed"}


def _attempt_segments(step: dict[str, Any], t0: int, span: int, now_ms: int,
                      run_running: bool) -> list[Segment]:
    """Each attempt of a step as its own bar, the queue wait before it and the backoff after
    a failed one as separate, labelled segments."""
    tries = step["tries"]
    of = step.get("max_attempts")
    out: list[Segment] = []
    for i, attempt in enumerate(tries):
        start, end = attempt["start_ms"] or t0, attempt["end_ms"] or attempt["start_ms"] or t0
        label = f"attempt {attempt['n']}" + (f" of {of}" if of else "")
        if attempt["queued_ms"]:
            out.append(_segment(start - attempt["queued_ms"], start, t0, span, "Queued",
                                f"queued {duration(attempt['queued_ms'])} before {label}"))
        kind = ATTEMPT_KIND.get(str(attempt["status"]), "Completed")
        verb = {"Retrying": "failed", "Failed": "failed", "Completed": "completed"}.get(
            str(attempt["status"]), str(attempt["status"]).lower())
        title = f"{label} {verb} in {duration(end - start)}"
        if attempt.get("error"):
            title += f" ({error_text(attempt['error'])})"
        out.append(_segment(start, end, t0, span, kind, title))
        if i + 1 < len(tries):
            following = tries[i + 1]
            due = (following["start_ms"] or end) - (following["queued_ms"] or 0)
            if due > end:
                out.append(_segment(end, due, t0, span, "Backoff",
                                    f"backoff {duration(due - end)} before attempt "
                                    f"{following['n']}"))
        elif attempt["status"] == "Retrying" and run_running:
            retry_at = attempt.get("retry_at_ms") or step.get("retry_at_ms") or end
            out.append(_segment(end, min(retry_at, now_ms), t0, span, "Backoff",
                                f"backoff until {clock(retry_at)} UTC, then attempt "
                                f"{attempt['n'] + 1}"))
            if now_ms > retry_at:
                out.append(_segment(retry_at, now_ms, t0, span, "Queued",
                                    f"queued {duration(now_ms - retry_at)} for attempt "
                                    f"{attempt['n'] + 1}"))
    return out


def timeline(detail: dict[str, Any], now_ms: int) -> Timeline:
    """Bars on one time axis from the run's start to its end (or now): the run, each step
    (every attempt, the queue wait before it and the backoff after a failed one; sleeps,
    waits, invokes), and the run's next call when it is queued or in flight."""
    run, steps, queue = detail["run"], detail["steps"], detail["queue"]
    t0 = run["started_ms"] or now_ms
    t1 = run["ended_ms"] or now_ms
    for step in steps:
        for t in (step["started_ms"], step["ended_ms"]):
            if t and t <= now_ms:
                t1 = max(t1, t)
    span = max(t1 - t0, 1)
    lanes = [Lane("Run", run["status"], [_segment(t0, t1, t0, span, run["status"],
                                                  f"run {run['status'].lower()}, "
                                                  f"{duration(t1 - t0)}")],
                  duration(t1 - t0))]
    running = run["status"] == "Running"
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
        elif step.get("tries") and not step.get("interrupted") \
                and status not in ("Sleeping", "Waiting", "Invoking"):
            segments = _attempt_segments(step, t0, span, now_ms, running)
            tries = step["tries"]
            last = tries[-1]
            busy = sum((t["end_ms"] or 0) - (t["start_ms"] or 0) for t in tries)
            note = duration(busy)
            if len(tries) > 1:
                note += f" · {len(tries)} attempts"
            if last["status"] == "Retrying" and running:
                note = f"attempt {last['n']} failed; retry at {clock(last['retry_at_ms'])}"
        elif status == "Retrying":
            segments.append(_segment(start, end, t0, span, "Retrying",
                                     f"{attempts} failed attempt(s)"))
            retry_at = step["retry_at_ms"] or end
            segments.append(_segment(end, min(retry_at, now_ms), t0, span, "Backoff",
                                     f"backoff, next attempt at {clock(retry_at)} UTC"))
            note = f"attempt {attempts} failed; retry at {clock(retry_at)}"
        elif status in ("Sleeping", "Waiting", "Invoking"):
            segments.append(_segment(start, now_ms, t0, span, status,
                                     f"{status.lower()} since {clock(start)} UTC"))
            until = step["until_ms"] or step["ended_ms"]
            note = f"until {clock(until)}" if until else status.lower()
        elif step.get("interrupted"):
            stop = step["ended_ms"] or run["ended_ms"] or now_ms
            segments.append(_segment(start, stop, t0, span, status,
                                     f"{step['interrupted'].lower()} for "
                                     f"{duration(stop - start)}, until the run ended"))
            note = f"was {step['interrupted'].lower()} · {duration(stop - start)}"
        else:
            if step["op"] and str(step["op"]).lower() == "sleep" and step["until_ms"]:
                end = step["until_ms"]
                status_kind = "Sleeping"
            else:
                status_kind = status or "Completed"
            if attempts > 1:
                # a record from before attempts were kept: one bar for all of them
                segments.append(_segment(start, end, t0, span, f"{status_kind} retried",
                                         f"{attempts} attempts, {duration(end - start)}"))
            else:
                segments.append(_segment(start, end, t0, span, status_kind,
                                         f"{status_kind.lower()}, {duration(end - start)}"))
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
                                                 f"{label} for {duration(now_ms - since)}")],
                          duration(now_ms - since)))
    ticks = [(pct, "+" + duration(span * pct / 100) if pct else "0")
             for pct in (0.0, 25.0, 50.0, 75.0, 100.0)]
    return Timeline(lanes, ticks, span, t0)


def run_times(run: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    """A run's duration split: queued (waiting for a worker), executing (calls to the
    app, every attempt) and the rest (sleeps, waits, backoff)."""
    if not run.get("measured"):
        return None
    total = (run["ended_ms"] or now_ms) - (run["started_ms"] or now_ms)
    queued, executing = run["queue_ms"], run["exec_ms"]
    return {"total_ms": total, "queue_ms": queued, "exec_ms": executing,
            "other_ms": max(0, total - queued - executing)}


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


# -- functions: charts of the exact counters ----------------------------------------------
CHART_STATUSES = ("Completed", "Failed", "Cancelled", "Skipped")


@dataclasses.dataclass
class Rect:
    kind: str  # css class
    y: float
    h: float


@dataclasses.dataclass
class Column:
    x: float
    width: float
    rects: list[Rect]
    title: str


@dataclasses.dataclass
class Chart:
    columns: list[Column]
    width: int
    height: int
    peak: int
    first: str  # axis labels
    last: str
    summary: str  # the chart in words (its aria-label)


def _when(start_ms: int, span_ms: int) -> str:
    text = clock(start_ms)
    return text[11:16] if span_ms <= 86_400_000 else text[5:16]


def series_chart(series: list[dict[str, int]], starts: list[int], bucket_ms: int,
                 width: int = 240, height: int = 40) -> Chart:
    """Stacked columns of runs that ended per bucket, by status (oldest first)."""
    totals = [sum(b.get(k, 0) for k in CHART_STATUSES) for b in series]
    span = len(series) * bucket_ms
    peak = max([*totals, 1])
    slot = width / max(len(series), 1)
    columns = []
    for i, bucket in enumerate(series):
        y = float(height)
        rects = []
        for kind in CHART_STATUSES:
            count = bucket.get(kind, 0)
            if not count:
                continue
            h = count * height / peak
            y -= h
            rects.append(Rect(kind, round(y, 2), round(h, 2)))
        parts = ", ".join(f"{bucket.get(k, 0)} {k.lower()}" for k in CHART_STATUSES
                          if bucket.get(k, 0))
        title = (f"{_when(starts[i], span)} UTC: {bucket.get('started', 0)} started"
                 + (f"; ended: {parts}" if parts else ""))
        columns.append(Column(round(i * slot + slot * 0.1, 2), round(max(slot * 0.8, 0.5), 2),
                              rects, title))
    ended = {k: sum(b.get(k, 0) for b in series) for k in CHART_STATUSES}
    summary = ", ".join(f"{n} {k.lower()}" for k, n in ended.items() if n) or "no runs ended"
    return Chart(columns, width, height, peak, _when(starts[0], span) if starts else "",
                 "now", summary)


def histogram_chart(hist: dict[int, int], width: int = 600, height: int = 60,
                    group: int = 8) -> tuple[Chart, list[str]]:
    """Runs per duration band (half an octave per column), and the bands' labels."""
    if not hist:
        return Chart([], width, height, 0, "", "", "no runs"), []
    lo, hi = min(hist) // group, max(hist) // group
    bands = [sum(n for b, n in hist.items() if b // group == g) for g in range(lo, hi + 1)]
    peak = max([*bands, 1])
    slot = width / len(bands)
    columns, labels = [], []
    for i, count in enumerate(bands):
        g = lo + i
        low = metrics_store.bucket_bounds(g * group)[0]
        high = metrics_store.bucket_bounds(g * group + group - 1)[1]
        label = f"{duration(low)} to {duration(high)}"
        labels.append(label)
        h = count * height / peak
        columns.append(Column(round(i * slot + 1, 2), round(max(slot - 2, 0.5), 2),
                              [Rect("Completed", round(height - h, 2), round(h, 2))] if count
                              else [], f"{label}: {count} runs"))
    return Chart(columns, width, height, peak, labels[0], labels[-1],
                 f"{sum(bands)} runs from {labels[0]} to {labels[-1]}"), labels


def usd(value: float | None) -> str:
    """`$0.0042`, `$12.50`: four decimals under a dollar (LLM calls cost fractions of one)."""
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


@dataclasses.dataclass
class Bar:
    """One bar of the spend-per-day chart (a stacked bar's fields: only `ok` is drawn)."""

    x: float
    width: float
    ok_y: float
    ok_h: float
    failed_y: float
    failed_h: float
    title: str


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


# -- the value viewer: a large JSON value as a folding tree, searchable -------------------------
MAX_NODES = 5000
LEAF_CHARS = 2000


@dataclasses.dataclass
class Node:
    kind: str  # "open" (an object or array: a <details>), "close", "leaf"
    key: str
    text: str = ""  # a leaf's JSON, or an object's "{3 keys}"
    type: str = ""  # string, number, boolean, null, object, array
    open: bool = False
    hit: bool = False
    path: str = ""


@dataclasses.dataclass
class Tree:
    nodes: list[Node]
    hits: int
    shown: int
    truncated: bool


def value_tree(value: Any, query: str = "") -> Tree:
    """The value as nodes for the viewer template: objects and arrays fold (open to depth 1,
    or where the search matched), leaves show their JSON. A match is a key or leaf text
    containing `query` (case-insensitive)."""
    needle = query.strip().lower()
    nodes: list[Node] = []
    state = {"hits": 0, "shown": 0, "truncated": False}

    def walk(key: str, item: Any, depth: int, path: str) -> bool:
        if state["shown"] >= MAX_NODES:
            state["truncated"] = True
            return False
        state["shown"] += 1
        if isinstance(item, dict | list):
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            kind = "object" if isinstance(item, dict) else "array"
            count = len(children)
            summary = (f"{{{count} key{'s' if count != 1 else ''}}}" if kind == "object"
                       else f"[{count} item{'s' if count != 1 else ''}]")
            node = Node("open", key, summary, kind, depth < 1, bool(needle) and needle in
                        key.lower(), path)
            nodes.append(node)
            found = node.hit
            for child_key, child in children:
                child_path = f"{path}.{child_key}" if path else str(child_key)
                found = walk(str(child_key), child, depth + 1, child_path) or found
            nodes.append(Node("close", key))
            if needle:
                node.open = found or depth < 1
            if node.hit:
                state["hits"] += 1
            return found
        text = item if isinstance(item, str) else orjson.dumps(item).decode()
        if isinstance(item, str):
            text = orjson.dumps(item[:LEAF_CHARS]).decode() + ("…" if len(item) > LEAF_CHARS
                                                              else "")
        kind = ("string" if isinstance(item, str) else "boolean" if isinstance(item, bool)
                else "null" if item is None else "number")
        hit = bool(needle) and (needle in key.lower() or needle in text.lower())
        if hit:
            state["hits"] += 1
        nodes.append(Node("leaf", key, text, kind, hit=hit, path=path))
        return hit

    walk("value", value, 0, "")
    return Tree(nodes, int(state["hits"]), int(state["shown"]), bool(state["truncated"]))
