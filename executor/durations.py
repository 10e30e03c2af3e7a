"""Durations as the protocol writes them: Go style (`1h30m`, `500ms`) plus `d` and `w`."""

from __future__ import annotations

import re

_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000,
            "d": 86_400_000, "w": 604_800_000}
MAX_MS = 9_223_372_036_854  # Go's longest time.Duration, about 292 years
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)")


def parse_ms(text: str) -> int:
    """Milliseconds in `text`; raises ValueError naming what it could not read."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    if value == "0":
        return 0
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"cannot read {text!r} as a duration (e.g. 30s, 5m, 1h30m, 2d)")
    if not total <= MAX_MS:  # also catches inf: a long run of digits reads as infinity
        raise ValueError(f"{text[:40]!r} is longer than the longest duration (about 292 years)")
    return int(total)
