"""Issue 15 in a real browser (Playwright on Debian's chromium) against a real executor,
redis-server and the example app (its LLM answers 429 on every second call): exact
statistics, indexed filters with counts, every attempt of a step, the run page's facts,
sub-statuses and a calm live list, the events page's defaults, bulk actions, and the
details (copy, value viewer, local times, theme, accessibility). The scale itself is
measured by `python -m bench.dashboard`, not here."""

from __future__ import annotations

import datetime
import pathlib
import re
import secrets
import zoneinfo
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import Stack, _keep_logs, start_stack
from ..procs import wait_for
from .test_dashboard import SHOTS, Pages, browser, expect, shot

pytestmark = pytest.mark.real

__all__ = ["browser"]  # the fixture, shared with test_dashboard.py

RESEARCH = "llm-pipeline-research-agent"
EXPENSE = "llm-pipeline-expense-approval"
TRIP = "llm-pipeline-trip-booking"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: pathlib.Path = tmp_path_factory.mktemp("dashboard-scale")
    started = start_stack(directory, "examples.fastapi_app.main:app",
                          app_env={"EXAMPLE_LLM_RATE_LIMIT_EVERY": "2"})
    try:
        started.executor.wait_synced(RESEARCH, EXPENSE, TRIP)
        yield started
    finally:
        started.stop()
        _keep_logs(directory)


@pytest.fixture
def pages(browser: Any, stack: Stack) -> Iterator[Pages]:
    opened = Pages(browser, stack.executor.url)
    yield opened
    opened.close()


def api(stack: Stack, path: str, **params: Any) -> Any:
    return httpx.get(stack.executor.url + path, params=params, timeout=30).json()


def finished(stack: Stack, event_id: str, status: str | tuple[str, ...] = "Completed") -> str:
    return str(stack.executor.wait_run(event_id, status, timeout=30)["run_id"])


def waiting_expense(stack: Stack) -> tuple[str, str]:
    """An expense run parked on its approval wait: (run id, request id)."""
    request_id = f"exp-{secrets.token_hex(3)}"
    run_id = finished(stack, stack.executor.send("expense/submitted",
                                                 {"request_id": request_id}), "Running")
    wait_for(lambda: any(s["status"] == "Waiting" for s in stack.executor.steps(run_id)), 20,
             "the expense run to wait")
    return run_id, request_id


def count(page: Any) -> int:
    return int(page.locator("#match-count strong").inner_text().replace(",", ""))


# -- 3. every attempt --------------------------------------------------------------------------
def test_a_retried_step_shows_each_attempt_its_429_and_the_backoff(pages: Pages,
                                                                   stack: Stack) -> None:
    retried = None
    for i in range(3):  # the LLM answers 429 on every second call
        run_id = finished(stack, stack.executor.send("research/requested",
                                                     {"topic": f"attempts {i}"}))
        llm = [s for s in stack.executor.steps(run_id) if s["name"] == "llm-summarize"]
        if llm and llm[0]["attempts"] == 2:
            retried = run_id
            break
    assert retried, "no research run retried its LLM step"
    page = pages.page(f"/runs/{retried}")
    card = page.locator('article.step[data-step="llm-summarize"]')
    attempts = card.locator("ol.attempts li")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("Attempt 1 of 4 failed")
    expect(attempts.nth(0)).to_contain_text("429 Too Many Requests")
    expect(attempts.nth(1)).to_contain_text("Attempt 2 of 4 completed")
    lane = page.locator('.lane[data-lane="llm-summarize"]')
    expect(lane.locator(".bar.Retrying")).to_have_count(1)
    expect(lane.locator(".bar.Backoff")).to_have_count(1)
    expect(lane.locator(".bar.Completed")).to_have_count(1)
    backoff = lane.locator(".bar.Backoff").bounding_box()
    tried = lane.locator(".bar.Retrying").bounding_box()
    assert backoff["x"] > tried["x"] and backoff["width"] > 0  # its own segment, after it
    expect(lane.locator(".sr-only")).to_contain_text("attempt 1 of 4 failed")
    expect(page.locator("#run-times")).to_contain_text("queued")
    expect(page.locator("#run-times")).to_contain_text("executing")
    shot(page, "run-retried-attempts-desktop-light")


# -- 1. exact statistics -------------------------------------------------------------------------
def test_functions_and_a_function_page_show_every_run(pages: Pages, stack: Stack) -> None:
    finished(stack, stack.executor.send("trip/requested", {"trip_id": "t-stats"}), "Failed")
    finished(stack, stack.executor.send("research/requested", {"topic": "stats"}))
    metrics = api(stack, "/v1/metrics", window="24h")["data"]
    research = api(stack, "/v1/runs", function_id=RESEARCH)["total"]
    assert metrics[RESEARCH]["started"] == research  # every run, not a sample
    trips = api(stack, "/v1/runs", function_id=TRIP)["total"]
    assert metrics[TRIP]["failed"] == trips and metrics[TRIP]["failure_rate"] == 1.0
    page = pages.page("/functions")
    card = page.locator(f'article[data-function="{RESEARCH}"]')
    expect(card.locator(".s-day strong")).to_have_text(str(research))
    expect(card.locator(".s-exec")).to_contain_text("execution p50 / p95 / p99")
    none = "\N{EN DASH}"  # what a percentile without runs shows
    assert none not in card.locator(".s-exec strong").inner_text()
    assert none not in card.locator(".s-queue strong").inner_text()
    expect(page.locator(f'article[data-function="{TRIP}"] .s-failed strong')).to_have_text("100%")
    expect(card.locator("svg.chart rect.Completed").first).to_be_visible()
    card.locator("h3 a").click()
    expect(page).to_have_url(re.compile(f"/functions/{RESEARCH}$"))
    row = page.locator('#function-stats tr[data-window="24h"]')
    expect(row.locator("td").first).to_have_text(str(research))
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("#backlog")).to_contain_text("calls in the backlog")
    shot(page, "function-desktop-light")


# -- 2. indexed filters with counts, search over output and error ---------------------------------
def test_filters_count_matches_and_search_covers_output_and_error(pages: Pages,
                                                                  stack: Stack) -> None:
    finished(stack, stack.executor.send("trip/requested", {"trip_id": "t-search"}), "Failed")
    finished(stack, stack.executor.send("research/requested", {"topic": "needle words"}))
    page = pages.page("/")
    page.get_by_label("Status").select_option("Failed")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"/\?status=Failed$"))  # no empty parameters
    assert count(page) == api(stack, "/v1/runs", status="Failed")["total"] >= 1
    page.get_by_label("Status").select_option("")
    search = page.get_by_label("Search the trigger event, output and error")
    search.fill("output.summary.tokens > 0 and data.topic = \"needle words\"")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#runs tr[data-id]")).to_have_count(1)
    assert count(page) == 1
    search.fill('error.message = "itinerary service unavailable" or needle')
    page.get_by_label("Function").select_option(TRIP)
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("#runs tr[data-id]")
    expect(rows.first).to_be_visible()
    assert count(page) == api(stack, "/v1/runs", function_id=TRIP)["total"]
    shot(page, "runs-search-output-error-desktop-light")


# -- 4. facts on the run page ------------------------------------------------------------------------
def test_run_facts_resumed_wait_interrupted_wait_and_on_failure_links(pages: Pages,
                                                                      stack: Stack) -> None:
    run_id, request_id = waiting_expense(stack)
    event_id = stack.executor.send("approval/decided", {"request_id": request_id,
                                                        "approved": True})
    wait_for(lambda: stack.executor.run(run_id)["status"] == "Completed", 20, "approval")
    page = pages.page(f"/runs/{run_id}")
    waited = page.locator('article.step[data-step="wait-for-decision"] .waited')
    expect(waited).to_contain_text(f"resumed by event {event_id}")
    waited.get_by_role("link", name=event_id).click()
    expect(page).to_have_url(re.compile(f"/events/{event_id}$"))
    expect(page.locator(f'#event-resumed tr[data-id="{run_id}"]')).to_be_visible()

    cancelled, _ = waiting_expense(stack)
    assert httpx.delete(f"{stack.executor.url}/v1/runs/{cancelled}",
                        params={"reason": "test"}).status_code == 200
    page.goto(f"{stack.executor.url}/runs/{cancelled}")
    card = page.locator('article.step[data-step="wait-for-decision"]')
    expect(card).to_contain_text("was waiting when the run ended, after")
    assert " d" not in card.locator("header").inner_text().split("after")[-1]  # not 3 days

    failed = finished(stack, stack.executor.send("trip/requested", {"trip_id": "t-links"}),
                      "Failed")
    page.goto(f"{stack.executor.url}/runs/{failed}")
    handler = page.locator("#run-related").get_by_role("link", name=f"{TRIP}-failure")
    expect(handler).to_be_visible(timeout=20_000)
    handler.click()
    expect(page.locator("#run-related")).to_contain_text(f"Started by the end of run {failed}")
    page.locator("#run-related").get_by_role("link", name=failed).click()
    expect(page).to_have_url(re.compile(f"/runs/{failed}$"))


# -- 5. the runs list says why, and stays calm ------------------------------------------------------
def test_runs_list_sub_status_elapsed_focus_pause_and_no_reconnecting_flash(
        pages: Pages, stack: Stack) -> None:
    run_id, request_id = waiting_expense(stack)
    page = pages.page(f"/?function={EXPENSE}&status=Running")
    page.evaluate("""() => {
        window.__states = [];
        const el = document.getElementById('runs-live');
        new MutationObserver(() => window.__states.push(el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true});
    }""")
    row = page.locator(f'#runs tr[data-id="{run_id}"]')
    expect(row.locator(".pill")).to_have_text("Waiting")
    expect(row).to_contain_text("for approval/decided until")
    elapsed = row.locator(".elapsed")
    first = elapsed.inner_text()
    expect(elapsed).not_to_have_text(first, timeout=5_000)  # it ticks
    # a row that updates keeps the keyboard focus where it was
    link = row.get_by_role("link", name=EXPENSE)
    link.focus()
    stack.executor.send("approval/decided", {"request_id": request_id, "approved": True})
    expect(row.locator(".pill")).to_have_text("Completed", timeout=20_000)
    assert page.evaluate("document.activeElement.getAttribute('href')") == f"/runs/{run_id}"
    # paused, new runs wait; resumed, they come
    page.goto(f"{stack.executor.url}/?function={EXPENSE}")
    expect(page.locator("#runs-live")).to_have_attribute("data-state", "live")
    page.get_by_role("button", name="Pause live updates").click()
    expect(page.locator("#runs-live")).to_have_text("Paused")
    watching = pages.page(f"/?function={EXPENSE}")  # the same list, not paused
    expect(watching.locator("#runs-live")).to_have_attribute("data-state", "live")
    later, _ = waiting_expense(stack)
    expect(watching.locator(f'#runs tr[data-id="{later}"]')).to_be_visible()
    expect(page.locator(f'#runs tr[data-id="{later}"]')).to_have_count(0)
    page.get_by_role("button", name="Resume live updates").click()
    expect(page.locator(f'#runs tr[data-id="{later}"]')).to_be_visible()
    page.evaluate("""() => {
        window.__states = [];
        const el = document.getElementById('runs-live');
        new MutationObserver(() => window.__states.push(el.textContent))
          .observe(el, {childList: true, characterData: true, subtree: true});
    }""")
    start = int(page.locator("#runs").get_attribute("data-connects") or 0)
    # the server restarts each stream every 10 s: wait for one restart, bounded
    expect(page.locator("#runs")).not_to_have_attribute("data-connects", str(start),
                                                        timeout=25_000)
    assert not any("Reconnecting" in s for s in page.evaluate("window.__states"))
    expect(page.locator("#runs-live")).to_have_attribute("data-state", "live")


# -- 6. events page at scale ---------------------------------------------------------------------------
def test_events_page_hides_internal_events_searches_data_and_a_time_range(
        pages: Pages, stack: Stack) -> None:
    marker = f"m{secrets.token_hex(4)}"
    finished(stack, stack.executor.send("research/requested", {"topic": marker}))
    # a failed run's end stores inngest/function.failed (an internal event)
    finished(stack, stack.executor.send("trip/requested", {"trip_id": "t-events"}), "Failed")
    page = pages.page("/events")
    names = page.locator("#events tr[data-id] td:first-child")
    expect(names.first).to_be_visible()
    assert not any(n.startswith("inngest/") for n in names.all_inner_texts())
    page.get_by_label("Show internal inngest/* events").check()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/events\?internal=1$"))
    expect(page.locator("#events tr[data-id]", has_text="inngest/function.failed").first
           ).to_be_visible()
    page.goto(f"{stack.executor.url}/events")
    page.get_by_label("Search the event data").fill(
        f'data.topic = "{marker}" and name = research/requested')
    page.get_by_label("Received").select_option("15m")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#events tr[data-id]")).to_have_count(1)
    expect(page.locator("#match-count")).to_contain_text("1 event")
    shot(page, "events-search-desktop-light")


# -- 7. bulk actions --------------------------------------------------------------------------------------
def test_bulk_cancel_selected_and_rerun_everything_matching(pages: Pages, stack: Stack) -> None:
    ids = [waiting_expense(stack)[0] for _ in range(3)]
    page = pages.page(f"/?function={EXPENSE}&status=Running")
    for run_id in ids[:2]:
        page.get_by_label(f"Select run {run_id}").check()
    page.get_by_role("button", name="Cancel selected…").click()
    expect(page.locator("h1")).to_have_text("Cancel 2 runs?")
    expect(page.locator("#bulk-preview")).to_contain_text("2 of them are running")
    page.get_by_label("Reason (kept with every run it touches)").fill("duplicate submissions")
    page.get_by_role("button", name="Cancel 2 runs").click()
    expect(page.locator("h1")).to_have_text("Bulk cancel: done", timeout=20_000)
    expect(page.locator("#bulk-job")).to_contain_text("2 cancelled")
    for run_id in ids[:2]:
        run = stack.executor.run(run_id)
        assert run["status"] == "Cancelled" and "duplicate submissions" in run["output"]["message"]
    assert stack.executor.run(ids[2])["status"] == "Running"

    page.goto(f"{stack.executor.url}/?function={EXPENSE}&status=Cancelled")
    matching = count(page)
    page.get_by_label(re.compile("Every run matching this filter")).check()
    page.get_by_role("button", name="Rerun selected…").click()
    expect(page.locator("h1")).to_have_text(f"Rerun {matching} runs?")
    page.get_by_label("Reason (kept with every run it touches)").fill("rerun after the fix")
    page.get_by_role("button", name=f"Rerun {matching} runs").click()
    expect(page.locator("h1")).to_have_text("Bulk rerun: done", timeout=20_000)
    shot(page, "bulk-done-desktop-light")
    # the same through the API: a preview, then the action
    body = {"action": "cancel", "filter": {"function_id": EXPENSE, "status": "Running"}}
    preview = httpx.post(f"{stack.executor.url}/v1/bulk", json={**body, "dry_run": True}).json()
    assert preview["data"]["actionable"] >= 1 + matching


# -- 8. details people expect ----------------------------------------------------------------------------
def test_copy_buttons_value_viewer_local_times_and_theme(browser: Any, stack: Stack) -> None:
    run_id = finished(stack, stack.executor.send("research/requested", {"topic": "details"}))
    opened = Pages(browser, stack.executor.url)
    opened.context.close()
    opened.context = browser.new_context(viewport={"width": 1280, "height": 800},
                                         timezone_id="Asia/Tokyo")
    opened.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                     origin=stack.executor.url)
    page = opened.page(f"/runs/{run_id}")
    page.get_by_role("button", name="Copy run id").click()
    assert page.evaluate("navigator.clipboard.readText()") == run_id
    # local and relative time beside the UTC one
    utc = page.locator(".meta time").first.get_attribute("datetime") or ""
    local = datetime.datetime.fromisoformat(utc.replace("Z", "+00:00")).astimezone(
        zoneinfo.ZoneInfo("Asia/Tokyo")).strftime("%H:%M:%S")
    when = page.locator(".meta .when").first
    expect(when).to_contain_text(local)
    expect(when).to_contain_text("local")
    expect(when).to_contain_text(re.compile(r"ago|now"))
    # the value viewer: folding and search inside the dashboard
    page.locator("#run-output").get_by_role("link", name="Open in viewer").click()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}/output/view$"))
    page.get_by_label("Find keys or values").fill("cost_usd")  # one key in the summary
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#viewer-hits")).to_contain_text("1 match for “cost_usd”")
    expect(page.locator(".leaf.hit")).to_contain_text("cost_usd")
    page.get_by_role("button", name="Fold all", exact=True).click()
    assert page.locator("#value-tree details[open]").count() == 0
    page.get_by_role("button", name="Unfold all", exact=True).click()
    assert page.locator("#value-tree details:not([open])").count() == 0
    # the theme toggle, remembered
    toggle = page.locator("#theme-toggle")
    while toggle.inner_text() != "Theme: dark":
        toggle.click()
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    shot(page, "viewer-dark-toggle")
    opened.close()


CHECKS = """() => {
  const problems = [];
  for (const img of document.querySelectorAll('[role=img]'))
    if (img.querySelector('a, button, input')) problems.push('role=img holds controls');
  for (const el of document.querySelectorAll('[aria-labelledby], [aria-describedby]'))
    for (const attr of ['aria-labelledby', 'aria-describedby'])
      for (const id of (el.getAttribute(attr) || '').split(/\\s+/).filter(Boolean))
        if (!document.getElementById(id)) problems.push(attr + ' -> missing #' + id);
  let last = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = +h.tagName[1];
    if (level > last + 1) problems.push('heading h' + level + ' after h' + last + ': ' + h.textContent.trim());
    last = level;
  }
  if (document.querySelectorAll('script:not([src])').length) problems.push('inline script');
  return problems;
}"""

CONTRAST = """(el) => {
  const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const style = getComputedStyle(el);
  const a = lum(rgb(style.color)), b = lum(rgb(style.backgroundColor));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def test_accessibility_findings_are_fixed_on_every_page(browser: Any, stack: Stack) -> None:
    running, _ = waiting_expense(stack)
    done = finished(stack, stack.executor.send("research/requested", {"topic": "a11y"}))
    event = api(stack, "/v1/events", limit=1)["data"][0]["id"]
    paths = ["/", f"/?function={RESEARCH}", f"/runs/{running}", f"/runs/{done}", "/events",
             f"/events/{event}", "/functions", f"/functions/{RESEARCH}", "/apps",
             f"/runs/{done}/output/view"]
    for scheme in ("light", "dark"):
        opened = Pages(browser, stack.executor.url, scheme=scheme)
        page = opened.page("")
        for path in paths:
            page.goto(stack.executor.url + path)
            expect(page.locator("h1")).to_be_visible()
            assert page.evaluate(CHECKS) == [], (scheme, path)
        page.goto(f"{stack.executor.url}/runs/{running}")
        page.get_by_text("Cancel run…").click()
        for button in (page.locator("summary.danger"),
                       page.get_by_role("button", name="Cancel this run")):
            ratio = button.evaluate(CONTRAST)
            assert ratio >= 4.5, (scheme, ratio)
        page.screenshot(path=str(SHOTS / f"run-cancel-confirm-{scheme}.png"), full_page=True)
        opened.close()
