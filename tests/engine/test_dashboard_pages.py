"""Issue 15, the dashboard's pages and API over a real engine in-process (fake app, injected
clock, fake and real Redis; HTTP through ASGI): the facts of the run page, sub-statuses,
links both ways, the events page's defaults, the value viewer, filters and bulk actions.
Each test fails without the feature."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import dashboard
from executor import control
from executor.api import create_app
from executor.driver import CallError, Completed, Outcome

from .harness import Call, Engine, ops, step_run


def _h(name: str) -> str:
    return name.ljust(40, "0")


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    # the pages read the wall clock: start the engine's clock there
    engine.clock.now = int(time.time() * 1000)
    app = create_app(engine.executor, manage_lifecycle=False)
    dashboard.mount(app, engine.executor)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        yield client


async def _form(http: httpx.AsyncClient, page: str, action: str,
                fields: dict[str, Any]) -> httpx.Response:
    """POST a form of `page` (with the CSRF token the page carries, if any)."""
    html = (await http.get(page)).text
    token = re.search(r'name="csrf" value="([^"]*)"', html)
    return await http.post(action, data={**fields, "csrf": token.group(1) if token else ""})


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_retrying_step_lists_its_attempt_without_an_empty_error_json(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops({"op": "StepError", "id": _h("llm"), "name": "llm-summarize",
                                    "error": {"name": "RateLimitError",
                                              "message": "429 Too Many Requests"}}))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    html = (await http.get(f"/runs/{run_id}")).text
    text = _text(html)
    assert "Attempt 1 of 5 failed" in text
    assert "RateLimitError: 429 Too Many Requests" in text
    assert "(0 B)" not in text  # the error is the record's, not a memo of 0 bytes
    lane = html[html.index('data-lane="llm-summarize"'):]
    lane = lane[:lane.index("</li>")]
    assert 'data-kind="Retrying"' in lane and 'data-kind="Backoff"' in lane


async def test_the_run_page_splits_queue_from_execution_time(engine: Engine,
                                                             http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        engine.clock.advance(32)
        return ops(step_run(_h("s"), 1, "only")) if not call.steps else Completed("ok")

    engine.answer(answer)
    (run_id,) = await engine.send()
    engine.clock.advance(74_000)  # no worker for 74 s
    await engine.run_until_idle()
    html = (await http.get(f"/runs/{run_id}")).text
    text = _text(html)
    assert re.search(r"Took 1 m 14 s : queued 1 m 14 s , executing 64 ms", text), text[:800]
    lane = html[html.index('data-lane="only"'):]
    assert 'data-kind="Queued"' in lane[:lane.index("</li>")]
    assert "queued 1 m 14 s before attempt 1" in lane[:lane.index("</li>")]


async def test_cancelling_event_and_cancelled_run_link_both_ways(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f", "cancel": [{"event": "order/cancelled"}]})
    engine.answer(lambda call: ops({"op": "Sleep", "id": _h("nap"), "name": "nap",
                                    "opts": {"duration": "1h"}}))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    engine.clock.advance(5_000)
    await engine.send(name="order/cancelled")
    event_id = engine.event_id(engine.sent)
    run_page = (await http.get(f"/runs/{run_id}")).text
    assert f'href="/events/{event_id}"' in run_page[run_page.index('id="cancelled-by"'):]
    text = _text(run_page)
    assert "was sleeping when the run ended, after 5.0 s" in text  # not the planned hour
    event_page = (await http.get(f"/events/{event_id}")).text
    cancelled = event_page[event_page.index('id="event-cancelled"'):]
    assert f'data-id="{run_id}"' in cancelled


async def test_a_finished_wait_links_the_event_that_resumed_it(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        if _h("w") in call.steps:
            return Completed("ok")
        return ops({"op": "WaitForEvent", "id": _h("w"), "name": "approval",
                    "opts": {"event": "approval/decided", "timeout": "72h"}})

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    engine.clock.advance(90_000)
    await engine.send({"ok": True}, name="approval/decided")
    await engine.run_until_idle()
    event_id = engine.event_id(engine.sent)
    text = _text((await http.get(f"/runs/{run_id}")).text)
    assert f"resumed by event {event_id} after 1 m 30 s" in text
    resumed = (await http.get(f"/events/{event_id}")).text
    assert f'data-id="{run_id}"' in resumed[resumed.index('id="event-resumed"'):]


async def test_on_failure_runs_and_reruns_link_both_ways(engine: Engine,
                                                        http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"}, {"id": "f-failure", "triggers": [
        {"event": "inngest/function.failed", "expression": "event.data.function_id == 'f'"}]})

    def answer(call: Call) -> Outcome:
        if call.event["name"] == "inngest/function.failed":
            return Completed("alerted")
        return CallError("boom", {"name": "Error", "message": "boom"}, retriable=False)

    engine.answer(answer)
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    failed_page = (await http.get(f"/runs/{run_id}")).text
    related = failed_page[failed_page.index('id="run-related"'):]
    handler = re.search(r'Its end started <a href="/runs/([^"]+)">f-failure', related)
    assert handler, related[:600]
    handler_page = _text((await http.get(f"/runs/{handler.group(1)}")).text)
    assert f"Started by the end of run {run_id}" in handler_page
    new_id = await control.rerun(engine.executor, run_id, reason="after the fix")
    old = (await http.get(f"/runs/{run_id}")).text
    assert f'Rerun as <a href="/runs/{new_id}"' in old
    assert f"Rerun of {run_id} (reason: after the fix)" in _text(
        (await http.get(f"/runs/{new_id}")).text)


async def test_the_runs_list_says_why_each_run_is_running(engine: Engine,
                                                         http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        kind = call.event["data"]["kind"]
        if kind == "sleep":
            return ops({"op": "Sleep", "id": _h("nap"), "name": "nap", "opts": {"duration": "1h"}})
        if kind == "wait":
            return ops({"op": "WaitForEvent", "id": _h("w"), "name": "approval",
                        "opts": {"event": "approval/decided", "timeout": "2h"}})
        return CallError("503", {"name": "Error", "message": "503"})

    engine.answer(answer)
    ids = {}
    for kind in ("sleep", "wait", "retry"):
        (ids[kind],) = await engine.send({"kind": kind})
    await engine.run_until_idle()
    (ids["queued"],) = await engine.send({"kind": "queued"})
    html = (await http.get("/?status=Running")).text
    rows = {m.group(1): _text(m.group(0)) for m in
            re.finditer(r'<tr data-id="([^"]+)".*?</tr>', html, re.DOTALL)}
    assert "Sleeping until" in rows[ids["sleep"]]
    assert "Waiting for approval/decided until" in rows[ids["wait"]]
    assert "Retrying (2/5) at" in rows[ids["retry"]]
    assert "Queued" in rows[ids["queued"]]
    assert 'class="elapsed" data-since=' in html  # live runs tick their elapsed time
    assert "4 runs match this filter" in _text(html)


async def test_the_events_page_hides_internal_events_unless_asked(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: CallError("no", {"name": "Error", "message": "no"}, False))
    await engine.send({"order": 17}, name="shop/order.placed")
    await engine.send({"order": 18}, name="shop/order.placed")
    await engine.send()  # starts a run that fails: its end stores inngest/function.failed
    await engine.run_until_idle()
    mine = (await http.get("/events")).text
    assert "shop/order.placed" in mine and "inngest/function.failed" not in mine
    assert "internal <code>inngest/*</code> events hidden" in mine
    everything = (await http.get("/events?internal=1")).text
    assert "inngest/function.failed" in everything
    found = _text((await http.get("/events?q=data.order+%3D+18")).text)
    assert "1 event " in found
    recent = await http.get("/events?range=15m&q=&name=")
    assert recent.status_code == 303 and recent.headers["location"] == "/events?range=15m"


async def test_the_value_viewer_folds_and_finds(engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    big = {"items": [{"id": i, "label": f"item {i}"} for i in range(300)],
           "meta": {"needle": "here <b>bold</b>"}}
    engine.answer(lambda call: Completed(big))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    run_page = (await http.get(f"/runs/{run_id}")).text
    assert f'href="/runs/{run_id}/output/view"' in run_page
    viewer = (await http.get(f"/runs/{run_id}/output/view?q=needle")).text
    assert "1 match for “needle”" in _text(viewer)
    assert '<div class="leaf hit"><span class="k">needle</span>' in viewer
    assert "&lt;b&gt;bold&lt;/b&gt;" in viewer and "<b>bold</b>" not in viewer
    assert viewer.count("<details") == 303  # the value, "items", its 300 objects, "meta"
    assert '[300 items]' in viewer


async def test_filters_answer_with_counts_and_drop_empty_parameters(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})

    def answer(call: Call) -> Outcome:
        n = call.event["data"]["n"]
        if n % 3 == 0:
            return CallError("rate", {"name": "RateLimitError", "message": "slow"}, False)
        return Completed({"summary": {"tokens": n * 10}})

    engine.answer(answer)
    for n in range(10):
        await engine.send({"n": n})
    await engine.run_until_idle()
    empty = await http.get("/?function=&status=Failed&q=")
    assert empty.status_code == 303 and empty.headers["location"] == "/?status=Failed"
    failed = _text((await http.get("/?status=Failed")).text)
    assert "4 runs match this filter" in failed
    searched = _text((await http.get(
        "/?q=output.summary.tokens+%3E+50+or+error.name+%3D+RateLimitError")).text)
    assert "6 runs match this filter" in searched  # 7, 8 (6 and 9 failed) and 0, 3, 6, 9
    api = (await http.get("/v1/runs", params={"status": "Failed", "limit": 2})).json()
    assert api["total"] == 4 and len(api["data"]) == 2 and api["next_cursor"]
    bad = await http.get("/v1/runs", params={"q": "data.x > abc"})
    assert bad.status_code == 400 and "compares numbers" in bad.json()["error"]


async def test_single_cancel_asks_for_a_reason(engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops({"op": "Sleep", "id": _h("nap"), "name": "nap",
                                    "opts": {"duration": "1h"}}))
    (run_id,) = await engine.send()
    await engine.run_until_idle()
    page = (await http.get(f"/runs/{run_id}")).text
    assert 'id="cancel-confirm"' in page and 'name="reason"' in page
    refused = await _form(http, f"/runs/{run_id}", f"/runs/{run_id}/cancel", {"reason": " "})
    assert refused.status_code == 400 and "say why" in refused.text
    assert (await engine.run(run_id))["status"] == "Running"
    done = await _form(http, f"/runs/{run_id}", f"/runs/{run_id}/cancel",
                       {"reason": "customer asked"})
    assert done.status_code == 303
    run = await engine.run(run_id)
    assert run["status"] == "Cancelled" and "customer asked" in run["output"]["message"]
    api = await http.delete(f"/v1/runs/{run_id}", params={"reason": "again"})
    assert api.status_code == 409


async def test_bulk_cancel_and_rerun_through_the_api(engine: Engine,
                                                     http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"}, {"id": "g", "triggers": [{"event": "test/g"}]})
    engine.answer(lambda call: ops({"op": "Sleep", "id": _h("nap"), "name": "nap",
                                    "opts": {"duration": "1h"}}))
    sleeping = [(await engine.send({"i": i}))[0] for i in range(5)]
    await engine.send(name="test/g")
    await engine.run_until_idle()
    body = {"action": "cancel", "filter": {"function_id": "f", "status": "Running"}}
    preview = (await http.post("/v1/bulk", json={**body, "dry_run": True})).json()["data"]
    assert preview["count"] == 5 and preview["actionable"] == 5
    no_reason = await http.post("/v1/bulk", json=body)
    assert no_reason.status_code == 400
    started = await http.post("/v1/bulk", json={**body, "reason": "bad deploy"})
    assert started.status_code == 202
    job_id = started.json()["data"]["id"]

    async def finished() -> bool:
        job = (await http.get(f"/v1/bulk/{job_id}")).json()["data"]
        return bool(job["status"] == "done")

    await _until(finished, "the bulk cancel to finish")
    job = (await http.get(f"/v1/bulk/{job_id}")).json()["data"]
    assert (job["total"], job["succeeded"], job["skipped"]) == (5, 5, 0)
    for run_id in sleeping:
        run = await engine.run(run_id)
        assert run["status"] == "Cancelled" and "bad deploy" in run["output"]["message"]
    reruns = await http.post("/v1/bulk", json={"action": "rerun", "run_ids": sleeping[:2],
                                               "reason": "retry after the fix"})
    rerun_id = reruns.json()["data"]["id"]

    async def rerun_done() -> bool:
        return bool((await http.get(f"/v1/bulk/{rerun_id}")).json()["data"]["status"] == "done")

    await _until(rerun_done, "the bulk rerun to finish")
    runs = (await http.get("/v1/runs", params={"function_id": "f"})).json()
    assert runs["total"] == 7


async def test_bulk_from_the_dashboard_previews_and_confirms_with_a_reason(
        engine: Engine, http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: ops({"op": "Sleep", "id": _h("nap"), "name": "nap",
                                    "opts": {"duration": "1h"}}))
    ids = [(await engine.send({"i": i}))[0] for i in range(3)]
    await engine.run_until_idle()
    runs_page = (await http.get("/")).text
    assert f'<input type="checkbox" form="bulk" name="run" value="{ids[0]}"' in runs_page
    token = re.search(r'name="csrf" value="([^"]*)"', runs_page)
    csrf = token.group(1) if token else ""
    preview = await http.post("/runs/bulk", data={"csrf": csrf, "action": "cancel",
                                                  "run": ids[:2]})
    text = _text(preview.text)
    assert preview.status_code == 200 and "Cancel 2 runs?" in text
    assert "2 of them are running and will be cancelled" in text
    confirm = {"csrf": csrf, "action": "cancel", "step": "confirm", "run": ids[:2]}
    assert (await http.post("/runs/bulk", data={**confirm, "reason": ""})).status_code == 400
    done = await http.post("/runs/bulk", data={**confirm, "reason": "wrong customer"})
    assert done.status_code == 303 and done.headers["location"].startswith("/bulk/")

    async def finished() -> bool:
        return "Bulk cancel: done" in (await http.get(done.headers["location"])).text

    await _until(finished, "the bulk cancel page to say done")
    assert [(await engine.run(r))["status"] for r in ids] == ["Cancelled", "Cancelled",
                                                              "Running"]
    everything = await http.post("/runs/bulk", data={"csrf": csrf, "action": "rerun",
                                                     "all": "1", "f_status": "Cancelled"})
    assert "Rerun 2 runs?" in _text(everything.text)


async def test_metrics_api_and_the_function_page(engine: Engine,
                                                 http: httpx.AsyncClient) -> None:
    await engine.sync({"id": "f"})
    engine.answer(lambda call: Completed(1))
    for _ in range(4):
        await engine.send()
    await engine.run_until_idle()
    found = (await http.get("/v1/metrics", params={"window": "1h"})).json()
    assert found["data"]["f"]["started"] == 4 and found["data"]["f"]["ended"]["Completed"] == 4
    assert len(found["data"]["f"]["series"]) == 60
    page = (await http.get("/functions/f")).text
    assert 'id="function-stats"' in page and "Execution time, last 24 hours" in page
    functions = _text((await http.get("/functions")).text)
    assert "execution p50 / p95 / p99" in functions and "queue p50 / p95 / p99" in functions
