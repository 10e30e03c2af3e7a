"""Reads for the REST API and the dashboard: runs, their steps, events, apps, functions.
Never writes.

Costs (the dashboard shows at most a page of rows; every read below is pipelined, so a page
is a few round trips, never one per row):

- `runs_page` unfiltered (optionally by time range): O(log N) to find where the page starts
  in the `il:runs` zset (ZREVRANK of the cursor's run, ZCOUNT for a time bound), then
  ZREVRANGE of one page, then two commands per row shown (HMGET of the run's fields, GETRANGE
  of the first bytes of its event for the event's name). Page 1 and page 5,000 cost the same.
- `runs_page` filtered by function, status or a search of the trigger event: there is no
  secondary index, so it examines runs newest first from the cursor, in pipelined batches of
  `SCAN_BATCH` (HMGET of function and status per run, then HGET of the event JSON for the
  runs that pass, only when searching), until a page of matches or `SCAN_BUDGET` runs were
  examined. A search for rare values in a big store therefore answers "searched the newest
  K runs, none matched; continue" and hands back a cursor to continue older. Cost per
  request: O(examined) commands, bounded by the budget.
- `run_detail`: two round trips whatever the number of steps (the run's hashes and list, then
  the state of its next queue item).
- `function_stats`: the runs started in the last day, newest first, at most `STATS_SAMPLE`
  of them (one ZREVRANGEBYSCORE + one HMGET each); the page says when it sampled.
"""

from __future__ import annotations

from .events import EventReads
from .paging import Page, RunQuery, make_cursor, split_cursor
from .run_detail import RunDetail
from .run_list import RunList
from .search import Search, parse_search
from .stats import Stats
from .views import RUN_STATUSES, event_head, event_view, run_view

__all__ = ["RUN_STATUSES", "Page", "ReadModel", "RunQuery", "Search", "event_head",
           "event_view", "make_cursor", "parse_search", "run_view", "split_cursor"]


class ReadModel(RunList, RunDetail, EventReads, Stats):
    """Reads for the REST API and the dashboard. Never writes."""
