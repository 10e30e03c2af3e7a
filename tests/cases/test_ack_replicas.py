"""`--ack-replicas`: an event is acknowledged only once a Redis replica has it (WAIT on the
connection that stored it), so a failover of the primary cannot lose an acknowledged event.
Real primary and replica processes; the replica is killed with `kill -9`."""

from __future__ import annotations

import pathlib

import httpx
import pytest

from executor import keys

from ..conftest import executor_alone
from ..procs import RedisServer, wait_for

pytestmark = pytest.mark.real


def test_events_are_acknowledged_once_a_replica_has_them(tmp_path: pathlib.Path) -> None:
    with executor_alone(tmp_path, ["--ack-replicas", "1", "--ack-timeout", "0.5"]) as ex:
        primary_port = ex.redis_url.rsplit(":", 1)[1].split("/")[0]
        replica = RedisServer(tmp_path)
        replica.args += ["--replicaof", "127.0.0.1", primary_port]
        replica.start()
        try:
            wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up",
                     15, "the replica to sync")
            ok = httpx.post(f"{ex.url}/e/test-key", json={"name": "test/a", "data": {"n": 1}},
                            timeout=10)
            assert ok.status_code == 200, ok.text
            (event_id,) = ok.json()["ids"]
            # the replica has it the moment the API answered
            assert replica.client().exists(keys.event(event_id)) == 1

            replica.kill9()
            refused = httpx.post(f"{ex.url}/e/test-key", timeout=10,
                                 json={"name": "test/a", "data": {"n": 2}, "id": "order-2"})
            assert refused.status_code == 503, refused.text
            body = refused.json()
            assert "confirmed by 0 of 1" in body["error"] and len(body["ids"]) == 1

            # the sender's retry, once a replica is back, is acknowledged with the same id
            # and stores nothing twice
            replica.start()
            wait_for(lambda: replica.client().info("replication")["master_link_status"] == "up",
                     15, "the replica to sync again")
            retried = httpx.post(f"{ex.url}/e/test-key", timeout=10,
                                 json={"name": "test/a", "data": {"n": 2}, "id": "order-2"})
            assert retried.status_code == 200, retried.text
            assert retried.json()["ids"] == body["ids"]
            listed = httpx.get(f"{ex.url}/v1/events", params={"name": "test/a"},
                               timeout=10).json()["data"]
            assert len(listed) == 2
        finally:
            replica.stop()
