"""Named points where this process kills itself with SIGKILL, for crash tests: a `kill -9`
from outside cannot land reliably between two lines, these can. Off unless the environment
names one: INNGEST_LIKE_CRASH_AT=<point> or <point>:<detail> (e.g. `intake:prim/reply`, at
the intake of an event of that name). Read once at import, so the check costs a comparison.
"""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("INNGEST_LIKE_CRASH_AT", "")


def reach(point: str, detail: str = "") -> None:
    if _AT and _AT in (point, f"{point}:{detail}"):
        os.kill(os.getpid(), signal.SIGKILL)
