"""Reads for the REST API and the dashboard: runs, their steps, events, apps, functions.
Never writes.

Costs (the dashboard shows at most a page of rows; every read below is pipelined, so a page
is a few round trips, never one per row):

- every index is one zset per shard (`executor/keys.py`): each shard's is read with the
  same bounds in one pipeline and the answers merged (`executor/shards.py`), in the order
  one zset would give; with one shard that is the one read.
- `runs_page` (`run_list.py`): every filter reads an index (`executor/indexes.py`): the run
  zset of the status, the function, or both (`run_index`), within a time range by score.
  Without a search: one round trip, a page read from the cursor's score down in each
  shard (ZREVRANGEBYSCORE with LIMIT, O(log N)) and its ZCOUNT, then two commands per row
  shown (HMGET of the run's fields, GETRANGE of its event's first bytes)
  and, for running rows, two more round trips for their sub-status (`phases.py`). Page 1
  and page 5,000 cost the same. A search reads the index entries of its terms, words and
  numbers (ZRANGE / ZRANGEBYSCORE), scores the matches in the filter's index (ZMSCORE) and
  sorts them: it costs the number of matches, never the number of runs stored, and the
  count is exact. A `!=` walks the filter's index skipping the excluded.
- `run_detail`: two round trips whatever the number of steps (the run's hashes and list, then
  the state of its next queue item), plus one for its links (reruns, runs its end started).
- `function_metrics` (`counters.py`): one HGETALL per minute or hour of the window from the
  exact counters the run scripts keep (`executor/metrics_store.py`), and one read-only
  script for the backlog: independent of how many runs are stored.
"""

from __future__ import annotations

from .counters import WINDOWS, Counters
from .events import EventReads
from .paging import Page, RunQuery, make_cursor, split_cursor
from .run_detail import RunDetail
from .run_list import RunList, run_index
from .search import Search, SearchError, parse_search
from .stats import Stats
from .views import RUN_STATUSES, event_head, event_view, run_view

__all__ = ["RUN_STATUSES", "WINDOWS", "Page", "ReadModel", "RunQuery", "Search", "SearchError",
           "event_head", "event_view", "make_cursor", "parse_search", "run_index", "run_view",
           "split_cursor"]


class ReadModel(RunList, RunDetail, EventReads, Stats, Counters):
    """Reads for the REST API and the dashboard. Never writes."""
