"""The web dashboard, served by the executor at `/` over the executor's read model.

Pages: runs (live over server-sent events with a pause control; sub-statuses; filters by
function, status and time with counts; search over the trigger event, output and error;
bulk cancel / rerun), one run (every attempt on the timeline, queue and execution time,
links to related runs and events, cancel with a reason, rerun), events (the user's, search,
time range; one event's started / resumed / cancelled runs), functions (exact counters and
charts; one function's page), apps (re-sync), and a value viewer. Costs are described in
`executor/read_model/__init__.py`.
"""

from .routes import mount

__all__ = ["mount"]
