"""Time is an argument: every script takes now_ms, and tests may inject a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_ms() -> int:
    return int(time.time() * 1000)
