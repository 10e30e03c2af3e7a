"""The dashboard in a real browser: Playwright driving Debian's chromium against a real
executor, redis-server and the example app. Pages are screenshotted under
test-output/screenshots/ at 1280x800 and 390x844, light and dark.

Needs `pip install playwright` and a system chromium (`apt-get install chromium`); never
`playwright install`.
"""

from __future__ import annotations

import pathlib
import re
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..conftest import OUTPUT, Stack, _keep_logs, executor_alone, start_stack
from ..procs import Executor, wait_for

pytestmark = pytest.mark.real

import playwright.sync_api as playwright_sync  # noqa: E402 - the test extra installs it

expect = playwright_sync.expect

SHOTS = OUTPUT / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: pathlib.Path = tmp_path_factory.mktemp("dashboard")
    stack = start_stack(directory, "examples.fastapi_app.main:app")
    try:
        stack.executor.wait_synced("llm-pipeline-research-agent", "llm-pipeline-expense-approval",
                                   "llm-pipeline-trip-booking")
        yield stack
    finally:
        stack.stop()
        _keep_logs(directory)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.fail("no chromium on PATH: scripts/test.sh installs it (apt-get install chromium); "
                    "never `playwright install`")
    expect.set_options(timeout=15_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Pages:
    """One browser context per test: pages, dialogs seen, and JS errors seen."""

    def __init__(self, browser: Any, base: str, size: str = "desktop",
                 scheme: str = "light") -> None:
        width, height = SIZES[size]
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           color_scheme=scheme)
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def page(self, path: str = "/") -> Any:
        page = self.context.new_page()
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        if path:
            page.goto(self.base + path)
        return page

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors


@pytest.fixture
def pages(browser: Any, example: Stack) -> Iterator[Pages]:
    opened = Pages(browser, example.executor.url)
    yield opened
    opened.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def run_of(example: Stack, event_id: str, status: str | tuple[str, ...]) -> dict[str, Any]:
    return example.executor.wait_run(event_id, status, timeout=30)


# -- runs: live, open one, timeline and outputs -----------------------------------------------
def test_sent_event_appears_live_and_its_run_shows_steps(pages: Pages, example: Stack) -> None:
    runs = pages.page("/")
    expect(runs.locator("#runs-live")).to_have_attribute("data-state", "live")
    runs.evaluate("window.__sameDocument = 'yes'")

    # send from the Events page's form, in another tab
    events = pages.page("/events")
    events.get_by_label("Name", exact=True).fill("research/requested")
    events.get_by_label("Data (a JSON object)").fill('{"topic": "live dashboards", "user_id": 7}')
    events.get_by_role("button", name="Send event").click()
    expect(events).to_have_url(re.compile(r"/events/[0-9A-Z]+\?sent=1$"))
    expect(events.get_by_role("status")).to_contain_text("Event sent. It started 1 run.")
    run_id = events.locator("#event-runs tr[data-id]").first.get_attribute("data-id")
    assert run_id

    # the runs tab shows it, then its completion, without a reload
    row = runs.locator(f'#runs tr[data-id="{run_id}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("llm-pipeline-research-agent")
    expect(row).to_contain_text("research/requested")
    expect(row.locator(".pill")).to_have_text("Completed", timeout=30_000)
    assert runs.evaluate("window.__sameDocument") == "yes"
    shot(runs, "runs-live-desktop-light")

    row.get_by_role("link", name="llm-pipeline-research-agent").click()
    expect(runs).to_have_url(re.compile(f"/runs/{run_id}$"))
    expect(runs.locator("h1 .pill")).to_have_text("Completed")
    for step in ("search-web", "extract-0", "extract-4", "llm-summarize", "research/completed"):
        lane = runs.locator(f'.lane[data-lane="{step}"]')
        expect(lane.locator(".bar").first).to_be_visible()
        width = lane.locator(".bar").first.bounding_box()["width"]
        assert width >= 2, (step, width)
    search = runs.locator('article.step[data-step="search-web"]')
    expect(search.locator("pre")).to_contain_text("https://example.org/live-dashboards/0-")
    expect(runs.locator("#run-output pre")).to_contain_text("Summary")
    expect(runs.locator("#trigger-json")).to_contain_text('"topic": "live dashboards"')
    shot(runs, "run-completed-desktop-light")


def test_send_form_shows_validation_errors_inline(pages: Pages) -> None:
    page = pages.page("/events")
    page.get_by_label("Name", exact=True).fill("research/requested")
    page.get_by_label("Data (a JSON object)").fill("{not json")
    page.get_by_role("button", name="Send event").click()
    expect(page.locator("#send-data-error")).to_contain_text("data: malformed JSON")
    expect(page.get_by_label("Data (a JSON object)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Data (a JSON object)")).to_have_value("{not json")
    page.get_by_label("Name", exact=True).fill("inngest/function.finished")
    page.get_by_label("Data (a JSON object)").fill('{"a": 1}')
    page.get_by_role("button", name="Send event").click()
    expect(page.locator("#send-name-error")).to_contain_text(
        "name: names starting with 'inngest/' are reserved")
    page.get_by_label("Name", exact=True).fill("x/y")
    page.get_by_label("Data (a JSON object)").fill("[1, 2]")
    page.get_by_role("button", name="Send event").click()
    expect(page.locator("#send-data-error")).to_have_text("data: must be a JSON object")
    shot(page, "events-form-errors-desktop-light")


# -- run actions ---------------------------------------------------------------------------------
def test_cancel_a_waiting_run_from_its_page(pages: Pages, example: Stack) -> None:
    ex = example.executor
    request_id = f"exp-{secrets.token_hex(3)}"
    run = run_of(example, ex.send("expense/submitted", {"request_id": request_id}), "Running")
    wait_for(lambda: any(s["status"] == "Waiting" for s in ex.steps(run["run_id"])), 20,
             "the approval run to wait")
    page = pages.page(f"/runs/{run['run_id']}")
    why = page.locator("#why-waiting")
    expect(why).to_contain_text("waiting for event approval/decided")
    expect(why).to_contain_text("async.data.request_id == event.data.request_id")
    expect(page.locator('.lane[data-lane="wait-for-decision"] .bar.Waiting')).to_be_visible()
    shot(page, "run-waiting-desktop-light")
    page.get_by_text("Cancel run…").click()  # asks for a confirmation and a reason
    page.get_by_label("Reason (kept with the run)").fill("duplicate request")
    page.get_by_role("button", name="Cancel this run").click()
    expect(page.locator("h1 .pill")).to_have_text("Cancelled")
    expect(page.locator("#cancelled-by")).to_contain_text("duplicate request")
    expect(page.get_by_role("button", name="Cancel this run")).to_have_count(0)
    expect(page.locator('article.step[data-step="wait-for-decision"]')).to_contain_text(
        "was waiting when the run ended")
    assert ex.run(run["run_id"])["status"] == "Cancelled"


def test_rerun_a_failed_run_and_rerun_from_a_step(pages: Pages, example: Stack) -> None:
    ex = example.executor
    old = run_of(example, ex.send("trip/requested", {"trip_id": "t-dash"}), "Failed")
    page = pages.page(f"/runs/{old['run_id']}")
    expect(page.locator("h1 .pill")).to_have_text("Failed")
    expect(page.locator("#run-why")).to_contain_text("itinerary service unavailable")
    expect(page.locator('.lane[data-lane="create-itinerary"] .bar.Failed')).to_be_visible()
    shot(page, "run-failed-desktop-light")

    page.get_by_role("button", name="Rerun", exact=True).click()
    expect(page).not_to_have_url(re.compile(f"/runs/{old['run_id']}$"))
    new_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator(".meta")).to_contain_text(f"Rerun of {old['run_id']}")
    assert wait_for(lambda: ex.run(new_id)["status"] == "Failed", 30, "the rerun to fail")
    # the page follows the run live until it ends
    expect(page.locator("h1 .pill")).to_have_text("Failed", timeout=30_000)

    page.goto(f"{example.executor.url}/runs/{old['run_id']}")
    page.get_by_label("Rerun from step").select_option(label="book-hotel")
    page.get_by_role("button", name="Rerun from step").click()
    expect(page).not_to_have_url(re.compile(f"/runs/{old['run_id']}$"))
    from_step = page.url.rsplit("/", 1)[-1]
    assert from_step not in (old["run_id"], new_id)
    flight = page.locator('article.step[data-step="book-flight"]')
    expect(flight).to_contain_text(f"Output reused from run {old['run_id']}")


# -- filters and search ----------------------------------------------------------------------------
def test_filter_by_status_and_search_an_event_field(pages: Pages, example: Stack) -> None:
    ex = example.executor
    user = 100_000 + secrets.randbelow(800_000)
    mine = run_of(example, ex.send("research/requested", {"topic": "search me", "user_id": user}),
                  "Completed")
    run_of(example, ex.send("research/requested", {"topic": "not me", "user_id": user + 1}),
           "Completed")
    run_of(example, ex.send("trip/requested", {"trip_id": "t-filter"}), "Failed")

    page = pages.page("/")
    page.get_by_label("Status").select_option("Failed")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"status=Failed"))
    statuses = page.locator("#runs tr[data-id] .pill")
    expect(statuses.first).to_have_text("Failed")
    assert set(statuses.all_inner_texts()) == {"Failed"}
    expect(page.locator("#match-count")).to_contain_text("match this filter")
    shot(page, "runs-filter-failed-desktop-light")

    page.get_by_label("Status").select_option("")
    page.get_by_label("Search the trigger event").fill(f"data.user_id = {user}")
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("#runs tr[data-id]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", mine["run_id"])
    shot(page, "runs-search-desktop-light")

    page.get_by_label("Search the trigger event").fill("search me")  # free text
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(f'#runs tr[data-id="{mine["run_id"]}"]')).to_be_visible()
    expect(page.locator("#runs tr[data-id]", has_text="llm-pipeline-trip-booking")).to_have_count(0)


# -- escaping -------------------------------------------------------------------------------------
def test_script_in_event_data_renders_as_text(pages: Pages, example: Stack) -> None:
    payload = "<script>alert(1)</script>"
    image = "<img src=x onerror=alert(2)>"
    events = pages.page("/events")
    expect(events.locator("#events-live")).to_have_attribute("data-state", "live")
    runs = pages.page("/")
    expect(runs.locator("#runs-live")).to_have_attribute("data-state", "live")
    event_id = example.executor.send("research/requested", {"topic": payload, "html": image})
    # live rows (rendered by the server, inserted by the page)
    live_event = events.locator(f'#events tr[data-id="{event_id}"]')
    expect(live_event).to_contain_text(payload)
    expect(live_event).to_contain_text(image)
    run = run_of(example, event_id, "Completed")
    expect(runs.locator(f'#runs tr[data-id="{run["run_id"]}"]')).to_be_visible()

    page = pages.page(f"/events/{event_id}")
    expect(page.locator("#event-json")).to_contain_text(payload)
    expect(page.locator("#event-json")).to_contain_text(image)
    page.goto(f"{example.executor.url}/runs/{run['run_id']}")
    expect(page.locator("#trigger-json")).to_contain_text(payload)
    expect(page.locator('article.step[data-step="search-web"] pre')).to_contain_text(
        "<script>alert(1)</script>")
    assert page.locator("script:not([src])").count() == 0  # no inline script at all
    assert pages.dialogs == []
    shot(page, "run-xss-desktop-light")


# -- functions and apps ---------------------------------------------------------------------------
def test_functions_stats_and_app_resync(pages: Pages, example: Stack) -> None:
    run_of(example, example.executor.send("research/requested", {"topic": "stats"}),
           "Completed")
    page = pages.page("/functions")
    card = page.locator('article[data-function="llm-pipeline-research-agent"]')
    expect(card).to_contain_text("research/requested")
    expect(card).to_contain_text("retries")
    assert int(card.locator(".stats strong").first.inner_text()) >= 1  # runs in the last hour
    expect(card.locator("svg.chart rect.Completed").first).to_be_visible()
    expect(page.locator('article[data-function="llm-pipeline-trip-booking-failure"]')
           ).to_contain_text("inngest/function.failed")

    page.goto(f"{example.executor.url}/apps")
    expect(page.locator(".card")).to_contain_text(example.app.url)
    page.get_by_role("button", name="Re-sync llm-pipeline").click()
    expect(page.get_by_role("status")).to_have_text("Re-synced llm-pipeline.")
    expect(page.locator(".card .pill")).to_have_text("in sync")


# -- every page, both sizes, both schemes ----------------------------------------------------------
def test_pages_at_desktop_and_phone_in_light_and_dark(browser: Any, example: Stack) -> None:
    base = example.executor.url
    run_ids = {r["function_id"]: r["run_id"] for r in httpx.get(
        f"{base}/v1/events/{example.executor.send('expense/submitted', {'request_id': 'x'})}/runs"
    ).json()["data"]}
    event = httpx.get(f"{base}/v1/events", params={"limit": 1}).json()["data"][0]["id"]
    paths = {"runs": "/", "run": f"/runs/{next(iter(run_ids.values()))}",
             "events": "/events", "event": f"/events/{event}", "functions": "/functions",
             "apps": "/apps"}
    for scheme in ("light", "dark"):
        for size in SIZES:
            opened = Pages(browser, base, size, scheme)
            page = opened.page("")
            for name, path in paths.items():
                page.goto(base + path)
                expect(page.locator("h1")).to_be_visible()
                # nothing wider than the viewport (no sideways scrolling of the page)
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 0, (name, size, overflow)
                unlabeled = page.evaluate("""() => [...document.querySelectorAll(
                    'input:not([type=hidden]), select, textarea, button')]
                    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                 && !e.textContent.trim()).map(e => e.outerHTML)""")
                assert unlabeled == [], (name, unlabeled)
                page.screenshot(path=str(SHOTS / f"{name}-{size}-{scheme}.png"), full_page=True)
            opened.close()

    # every control is reachable with the keyboard, in order
    opened = Pages(browser, base)
    page = opened.page("/")
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate(
            "document.activeElement.id || document.activeElement.textContent.trim()"))
    for control in ("f-function", "f-status", "f-range", "f-from", "f-to", "f-q", "Apply"):
        assert control in reached, (control, reached)
    opened.close()


# -- production mode: forms need the session's CSRF token --------------------------------------
@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    with executor_alone(tmp_path_factory.mktemp("dashboard-prod"), [
            "--signing-key", "signkey-test-" + secrets.token_hex(32),
            "--dashboard-password", "pw-dashboard"], production=True) as executor:
        yield executor


def test_production_forms_require_the_csrf_token(production: Executor) -> None:
    base = production.url
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/events").status_code == 303  # the login comes first
        form = http.get("/login").text
        login_csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', form)
        assert login_csrf, "the login form carries a CSRF token"
        login = http.post("/login", data={"password": "pw-dashboard", "next": "/events",
                                          "csrf": login_csrf.group(1)})
        assert login.status_code == 303
        page = http.get("/events")
        assert page.status_code == 200
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert token, "the send form carries a CSRF token"
        event = {"name": "dash/test", "data": "{}"}
        refused = http.post("/events", data=event)
        assert refused.status_code == 403
        wrong = http.post("/events", data={**event, "csrf": "0" * 64})
        assert wrong.status_code == 403
        sent = http.post("/events", data={**event, "csrf": token.group(1)})
        assert sent.status_code == 303 and sent.headers["location"].startswith("/events/")
        for path in ("/runs/nope/cancel", "/runs/nope/rerun", "/apps/nope/sync"):
            assert http.post(path, data={}).status_code == 403, path
        assert "Content-Security-Policy" in page.headers
        assert http.get("/static/dashboard.js").status_code == 200
