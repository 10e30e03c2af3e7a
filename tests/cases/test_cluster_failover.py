"""Nothing lost on a failover: the engine on a real Redis Cluster (three masters, a replica
each), a `kill -9` of the master holding the store while runs are in flight and events keep
coming. With `--ack-replicas 1` every event the API acknowledged reaches a replica first, so
after the replica takes over every acknowledged event's run completes, once; only a step in
flight at the kill may run twice."""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from executor import keys

from ..conftest import _keep_logs, start_stack
from ..procs import RedisCluster, wait_for

pytestmark = pytest.mark.real


def test_kill9_of_the_master_loses_no_acknowledged_event(tmp_path: pathlib.Path) -> None:
    stack = start_stack(tmp_path, app_env={"STEP_DELAY": "0.05"},
                        # a call whose answer the failover cut off is retried after 20 s
                        # at most, not the default 10 minutes
                        executor_extra=["--ack-replicas", "1", "--workers", "16",
                                        "--call-timeout", "20"],
                        redis_kind="cluster")
    try:
        ex = stack.executor
        ex.wait_synced("durable-ten-steps")
        assert isinstance(stack.redis, RedisCluster)
        acknowledged: dict[str, str] = {}  # sender id -> event id
        stop = threading.Event()

        def send_until_acknowledged(sender_id: str, n: int) -> None:
            # a sender that retries until the API acknowledges (503 or a dropped
            # connection while the cluster fails over): its `id` makes the retries one event
            while not stop.is_set():
                try:
                    answer = httpx.post(f"{ex.url}/e/test-key", timeout=10, json={
                        "name": "test/ten-steps", "data": {"n": n}, "id": sender_id})
                except httpx.TransportError:
                    continue
                if answer.status_code == 200:
                    acknowledged[sender_id] = answer.json()["ids"][0]
                    return
                # not acknowledged (503: not on a replica, or storage unreachable); always
                # a JSON error
                assert answer.status_code >= 500 and answer.json()["error"], answer.text

        def sender() -> None:
            for n in range(40):
                if stop.is_set():
                    return
                send_until_acknowledged(f"order-{uuid.uuid4().hex}", n)

        thread = threading.Thread(target=sender)
        thread.start()
        wait_for(lambda: len(acknowledged) >= 10, 30, "runs in flight")
        killed = stack.redis.kill_master_of(keys.PREFIX)
        # back as a replica of the promoted master: until then the shard has no replica
        # and events are refused (503), as --ack-replicas 1 asks
        killed.start()
        thread.join(timeout=120)
        stop.set()
        assert len(acknowledged) == 40

        redis = stack.redis.client()

        def completed(event_id: str) -> dict[str, Any]:
            try:
                return ex.wait_run(event_id, timeout=90)
            except AssertionError:  # say where the run stands: its hash and its queue items
                (run,) = ex.runs_of(event_id)
                with stack.keyed():
                    q = keys.queue_of(run["run_id"])
                    items = {k.decode(): (redis.zscore(q.ready, k), redis.zscore(q.leased, k))
                             for k in redis.hkeys(q.items)
                             if k.decode().startswith(run["run_id"])}
                    stack_key = keys.run_stack(run["run_id"])
                raise AssertionError(f"run {run} has items (due, lease expiry): {items}; "
                                     f"stack {redis.llen(stack_key)}, "
                                     f"now {time.time() * 1000:.0f}") from None

        runs = [completed(event_id) for event_id in acknowledged.values()]
        assert [r["output"] for r in runs] == [45] * 40
        for event_id in acknowledged.values():
            assert len(ex.runs_of(event_id)) == 1
        counts = stack.counts()
        twice = 0
        for run in runs:
            ran = [counts.get((run["run_id"], f"step-{i}"), 0) for i in range(10)]
            assert all(c >= 1 for c in ran), (run["run_id"], ran)
            assert sum(c - 1 for c in ran) <= 1, (run["run_id"], ran)  # only the one in flight
            twice += sum(c - 1 for c in ran)
        print(f"steps run twice across the failover: {twice}")
    finally:
        stack.stop()
        _keep_logs(tmp_path)
