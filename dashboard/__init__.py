"""The web dashboard, served by the executor at `/` over the executor's read model.

Pages: runs (live over server-sent events; filter by function, status, time; search the
trigger event), one run (timeline, outputs, why it waits; cancel / rerun / rerun from a step),
events (live; payloads; the runs each started; a send form), functions (triggers, options,
last hour / day, failure rate, p50 / p95, runs per hour) and apps (last sync, re-sync).
Paging and search costs are described in `executor/read_model.py`.
"""

from .routes import mount

__all__ = ["mount"]
