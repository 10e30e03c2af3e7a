"""The dashboard's live feeds (dashboard/live.py), tick by tick over a real engine."""

from __future__ import annotations

import orjson

from dashboard.live import EventsFeed, RunFeed, RunsFeed
from executor.driver import Completed
from executor.read_model import RunQuery

from .harness import Engine


def _events(messages: list[str]) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for message in messages:
        kind = message.split("\n", 1)[0].removeprefix("event: ")
        data = next(line for line in message.splitlines() if line.startswith("data: "))
        out.append((kind, orjson.loads(data.removeprefix("data: "))))
    return out


async def test_runs_feed_sends_new_rows_then_status_changes(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    feed = RunsFeed(engine.executor.read, RunQuery(), after=0, new=True)
    assert await feed.tick() == []
    (run_id,) = await engine.send()
    (kind, row), = _events(await feed.tick())
    assert kind == "row" and row["id"] == run_id and row["new"] and row["status"] == "Running"
    assert await feed.tick() == []  # nothing changed: nothing sent
    engine.answer(lambda call: Completed("ok"))
    await engine.run_until_idle()
    (kind, row), = _events(await feed.tick())
    assert row["id"] == run_id and not row["new"] and row["status"] == "Completed"
    assert run_id in row["html"]


async def test_runs_feed_with_a_status_filter_holds_new_runs_until_they_match(
        engine: Engine) -> None:
    await engine.sync({"id": "f"})
    feed = RunsFeed(engine.executor.read, RunQuery(status="Completed"), after=0, new=True)
    (run_id,) = await engine.send()
    (kind, pending), = _events(await feed.tick())
    assert kind == "pending" and pending == [run_id]  # the page keeps it across reconnects
    engine.answer(lambda call: Completed("ok"))
    await engine.run_until_idle()
    sent = _events(await feed.tick())
    assert [k for k, _ in sent] == ["row", "pending"]
    assert sent[0][1]["id"] == run_id and sent[0][1]["new"] and sent[1][1] == []
    # a reconnecting page hands its pending list back
    again = RunsFeed(engine.executor.read, RunQuery(status="Failed"), after=0, new=False,
                     pend=run_id)
    assert _events(await again.tick()) == [("pending", [])]  # ended, not Failed: dropped


async def test_events_and_run_feeds(engine: Engine) -> None:
    await engine.sync({"id": "f"})
    events = EventsFeed(engine.executor.read, None, after=0, new=True)
    (run_id,) = await engine.send({"n": 1})
    (kind, row), = _events(await events.tick())
    assert kind == "row" and row["new"]
    assert await events.tick() == []
    run = RunFeed(engine.executor.read, run_id, "")
    (kind, changed), = _events(await run.tick())
    assert kind == "changed" and changed["status"] == "Running"
    assert await run.tick() == []
    engine.answer(lambda call: Completed("ok"))
    await engine.run_until_idle()
    (kind, changed), = _events(await run.tick())
    assert changed["status"] == "Completed"
