"""The dashboard at production scale: a store of 100,000 runs seeded through the real ingest
and run path, then every page timed, and its numbers checked against the truth.

    python -m bench.dashboard seed [--runs 100000] [--dir .bench-dashboard]
    python -m bench.dashboard truth [--dir .bench-dashboard]   # recount truth.json
    python -m bench.dashboard measure [--dir .bench-dashboard] [--repeat 7]
    python -m bench.dashboard screenshots [--dir .bench-dashboard] [--out test-output/screenshots]

`seed` starts a redis-server on 127.0.0.1 and drives the executor in-process over a fake app
(tests/engine/harness.py: the real scripts, queue, op switch and lifecycle; only the HTTP call
to the app is replaced, and the clock is injected): each run's event goes through
`Ingest.accept`, its calls through the worker and `Opcodes`, its end through the lifecycle
(which stores `inngest/function.finished`, so there are about two events per run). Ten
functions over seven days: a research agent whose LLM step answers 429 now and then (the
retry keeps both attempts), a 1-step function with long queue waits, one that always fails,
sleeps and waits left pending, and a burst of one function in the last 40 minutes (the
newest 20,000 runs). The run ends near the wall clock of the seed's start; the store is saved
to `<dir>/dump.rdb` with `truth.json` (counts and exact percentiles computed from the run
hashes, and the expected matches of each filter).

`measure` loads that dump in a fresh redis-server and serves the dashboard in-process (ASGI,
no network), with the wall clock shifted to the seed's end (so "last hour" means the seed's
last hour), and prints the median and p95 time of each page, and how many of the true
matches the first request shows. The same script runs against older code (it only uses the
executor's `Executor`, `create_app` and the dashboard's `mount`), which gives the "before"
column. `screenshots` serves the same store over HTTP and saves each page with Playwright
(Debian's chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import pathlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson
from redis.asyncio import Redis

ROOT = pathlib.Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000
BURST_MS = 40 * 60_000
RARE_WORD = "zebracorn"
APP_URL = "http://bench.app/api/inngest"

# function id, event name, share of the non-burst runs
FUNCTIONS = [
    ("research-agent", "research/requested", 0.16),
    ("send-email", "email/send", 0.28),
    ("resize-image", "image/uploaded", 0.14),
    ("charge-card", "payment/requested", 0.12),
    ("sync-crm", "crm/sync", 0.005),
    ("nightly-report", "report/nightly", 0.025),
    ("approval-flow", "expense/submitted", 0.04),
    ("webhook-fanout", "webhook/received", 0.12),
    ("summarize-doc", "doc/uploaded", 0.09),
]
BURST = ("import-row", "import/row")


def _h(name: str) -> str:
    return name.encode().hex().ljust(40, "0")[:40]


# -- seeding ---------------------------------------------------------------------------------
class Scenario:
    """The fake app: what each function's calls answer, and how long they take."""

    def __init__(self, rng: random.Random, clock: Any) -> None:
        self.rng = rng
        self.clock = clock

    def answer(self, call: Any) -> Any:
        from executor.driver import CallError, Completed
        from tests.engine.harness import ops, step_run

        rng, name, data, done = self.rng, call.event["name"], call.event["data"], call.steps

        def took(low: int, high: int) -> None:
            self.clock.advance(rng.randint(low, high))

        def step(label: str, value: Any, low: int, high: int) -> Any:
            took(low, high)
            return ops(step_run(_h(label), value, label))

        if name == "research/requested":
            if _h("search-web") not in done:
                return step("search-web", [f"https://example.org/{i}" for i in range(3)], 30, 90)
            if _h("extract") not in done:
                return step("extract", {"pages": 3, "note": data.get("note", "")}, 20, 60)
            if _h("llm-summarize") not in done:
                if data.get("rate_limited") and call.attempt == 0:
                    took(100, 300)
                    return ops({"op": "StepError", "id": _h("llm-summarize"),
                                "name": "llm-summarize",
                                "error": {"name": "RateLimitError",
                                          "message": "429 Too Many Requests"}})
                tokens = rng.randint(80, 4_500)
                return step("llm-summarize", {"tokens": tokens, "text": f"summary of "
                                              f"{data['topic']}"}, 300, 2_000)
            took(2, 6)
            return Completed({"summary": done[_h("llm-summarize")]["data"], "sources": 3})
        if name == "email/send":
            if data.get("bounce"):
                took(40, 120)
                return CallError("SMTP 554", {"name": "SMTPError", "message": "554 rejected"},
                                 retriable=False)
            if _h("send") not in done:
                return step("send", {"message_id": f"m-{data['n']}"}, 40, 120)
            took(1, 4)
            return Completed({"sent": True})
        if name == "image/uploaded":
            if _h("resize") not in done:
                return step("resize", {"sizes": [64, 256, 1024]}, 200, 900)
            took(1, 4)
            return Completed({"ok": True})
        if name == "payment/requested":
            if data.get("declined"):
                took(80, 200)
                return CallError("declined", {"name": "CardDeclined",
                                              "message": "the card was declined"},
                                 retriable=False)
            if _h("authorize") not in done:
                return step("authorize", {"auth": f"a-{data['n']}"}, 80, 250)
            if _h("capture") not in done:
                return step("capture", {"captured": data["amount"]}, 60, 200)
            took(1, 4)
            return Completed({"charged": data["amount"]})
        if name == "crm/sync":
            took(500, 1_500)
            return CallError("CRM down", {"name": "CRMUnavailable",
                                          "message": "the CRM answered 503"}, retriable=False)
        if name == "report/nightly":
            if _h("gather") not in done:
                return step("gather", {"rows": 1200}, 100, 400)
            if _h("cool-down") not in done:
                took(2, 6)
                return ops({"op": "Sleep", "id": _h("cool-down"), "name": "cool-down",
                            "opts": {"duration": "10m"}})
            took(50, 150)
            return Completed({"report": "ok"})
        if name == "expense/submitted":
            if _h("notify-approver") not in done:
                return step("notify-approver", "sent", 20, 60)
            if _h("wait-for-decision") not in done:
                took(2, 6)
                return ops({"op": "WaitForEvent", "id": _h("wait-for-decision"),
                            "name": "wait-for-decision",
                            "opts": {"event": "approval/decided", "timeout": "72h",
                                     "if": "async.data.request_id == event.data.request_id"}})
            took(2, 6)
            return Completed({"decision": done[_h("wait-for-decision")] is not None})
        if name == "webhook/received":
            if _h("fan-out") not in done:
                return step("fan-out", {"targets": 4}, 30, 60)
            took(1, 3)
            return Completed({"delivered": 4})
        if name == "doc/uploaded":
            if _h("chunk") not in done:
                return step("chunk", {"chunks": 12}, 40, 120)
            took(300, 1_500)
            return Completed({"summary": {"tokens": data["tokens"], "title": data["title"]}})
        if name == "import/row":
            if _h("upsert") not in done:
                return step("upsert", {"row": data["row"]}, 5, 20)
            took(1, 2)
            return Completed({"row": data["row"]})
        took(1, 2)
        return Completed(None)


def _data(fn: str, n: int, rng: random.Random) -> dict[str, Any]:
    base: dict[str, Any] = {"n": n, "user_id": rng.randint(1, 1000)}
    if fn == "research-agent":
        base.update(topic=f"topic {n % 500}", rate_limited=rng.random() < 0.06)
    elif fn == "send-email":
        base.update(to=f"user{base['user_id']}@example.com", bounce=rng.random() < 0.01)
    elif fn == "charge-card":
        base.update(amount=rng.randint(100, 99_000), declined=rng.random() < 0.03)
    elif fn == "summarize-doc":
        base.update(tokens=rng.randint(50, 5_000), title=f"doc {n}")
    elif fn == "approval-flow":
        base.update(request_id=f"req-{n}")
    elif fn == "import-row":
        base.update(row=n, file="customers.csv")
    return base


def _queue_ms(fn: str, rng: random.Random) -> int:
    if fn == "resize-image":
        return rng.randint(20_000, 90_000)  # a busy image pool: long waits for a worker
    if fn == "import-row":
        return rng.randint(0, 2_000)
    return int(rng.expovariate(1 / 150))


async def seed(directory: pathlib.Path, runs: int, rng_seed: int) -> None:
    from executor import keys
    from executor.service import Executor, Settings
    from tests.engine.harness import Clock, FakeDriver

    server = _redis_server(directory, fresh=True)
    try:
        redis = Redis.from_url(server[1])
        rng = random.Random(rng_seed)
        end = int(time.time() * 1000)
        start = end - 7 * DAY_MS
        clock = Clock()
        clock.now = start
        scenario = Scenario(rng, clock)
        executor = Executor(redis, Settings(run_worker=False, retry_interval_s=15.0,
                                            slots=1), clock)
        executor.worker.driver = FakeDriver(scenario.answer)  # type: ignore[assignment]
        await executor.scripts.load_all()
        body = {"appName": "bench", "url": APP_URL, "functions": [
            {"id": fn, "name": fn, "triggers": [{"event": event}],
             "steps": {"step": {"id": "step", "name": "step", "retries": {"attempts": 3},
                                "runtime": {"type": "http", "url": f"{APP_URL}?fnId={fn}"}}}}
            for fn, event, _ in [*FUNCTIONS, (*BURST, 0)]]}
        await executor.registry.sync(body, orjson.dumps(body), clock())
        burst = min(20_000, runs // 5)
        steady = runs - burst
        # arrival times: steady over 7 days (denser by day), the burst in the last 40 min
        arrivals: list[tuple[int, str, str]] = []
        names, events, weights = zip(*FUNCTIONS, strict=True)
        for _ in range(steady):
            at = start + int(rng.random() ** 0.9 * (7 * DAY_MS - 10 * 60_000))
            i = rng.choices(range(len(names)), weights)[0]
            arrivals.append((at, names[i], events[i]))
        for _ in range(burst):
            arrivals.append((end - BURST_MS + rng.randint(0, BURST_MS - 120_000), *BURST))
        arrivals.sort()
        later: list[tuple[int, int, str, dict[str, Any]]] = []  # approvals to send
        sent = 0
        t0 = time.perf_counter()
        for n, (at, fn, event_name) in enumerate(arrivals):
            while later and later[0][0] <= at:
                due, _, name, data = heapq.heappop(later)
                clock.now = due
                await executor.ingest.accept([_event(name, data, clock())])
                await executor.worker.run_until_idle()
            data = _data(fn, n, rng)
            if fn in ("research-agent", "webhook-fanout") and rng.random() < 0.00004 * 30:
                data["note"] = f"saw a {RARE_WORD} near the river"
            clock.now = at
            await executor.ingest.accept([_event(event_name, data, at)])
            if fn == "approval-flow" and rng.random() < 0.85:
                heapq.heappush(later, (at + rng.randint(60_000, 36 * 3_600_000), n,
                                       "approval/decided",
                                       {"request_id": data["request_id"], "approved": True}))
            clock.now = at + _queue_ms(fn, rng)
            await executor.worker.run_until_idle()
            sent += 1
            if sent % 5000 == 0:
                rate = sent / (time.perf_counter() - t0)
                print(f"  {sent:,} runs seeded ({rate:,.0f} runs/s)", flush=True)
        # a backlog left for the Functions page: due calls no worker has taken yet
        clock.now = end - 90_000
        for i in range(600):
            fn, event_name = ("resize-image", "image/uploaded") if i % 3 else (
                "send-email", "email/send")
            clock.now += 100
            await executor.ingest.accept([_event(event_name, _data(fn, runs + i, rng),
                                                 clock())])
        truth = await _truth(redis, end)
        (directory / "truth.json").write_text(json.dumps({"end_ms": end, **truth}, indent=1))
        info = await redis.info("memory")
        stored = sum([await redis.zcard(keys.runs(s)) for s in keys.shards()])
        received = sum([await redis.zcard(keys.events(s)) for s in keys.shards()])
        print(f"seeded {runs:,} runs ({stored:,} in the run indexes, {received:,} events) "
              f"in {time.perf_counter() - t0:.0f} s; Redis uses {info['used_memory_human']}")
        for label, family in (("search indexes", "search"), ("statistics", "stats"),
                              ("status indexes", "runs")):
            used, count = 0, 0
            for shard in keys.shards():
                pattern = f"{keys.prefix(shard)}:{family}:*"
                async for key in redis.scan_iter(match=pattern, count=5000):
                    used += int(await redis.memory_usage(key, samples=0) or 0)
                    count += 1
            print(f"  {label}: {count:,} keys, {used / 2**20:,.1f} MiB")
        await redis.bgsave()
        deadline = time.monotonic() + 600
        while (await redis.info("persistence"))["rdb_bgsave_in_progress"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the dump took over 10 minutes")
            await asyncio.sleep(0.5)
        await redis.aclose()
    finally:
        _stop(server[0])


def _event(name: str, data: dict[str, Any], ts: int) -> Any:
    from ulid import ULID

    from executor.events import IncomingEvent

    event_id = str(ULID())
    return IncomingEvent(event_id, {"name": name, "data": data, "id": event_id, "ts": ts,
                                    "user": {}}, event_id)


async def _truth(redis: Redis, end: int) -> dict[str, Any]:
    """The exact answers, read from every run hash: what each page should show."""
    from executor import keys, shards

    every = [shards.entries(await redis.zrange(keys.runs(shard), 0, -1, withscores=True))
             for shard in keys.shards()]
    ids = [run_id for run_id, _ in shards.oldest_first(every)]  # as one index: oldest first
    # the Functions page's "last 24 hours": 24 hourly buckets, the last one holding `end`
    day_start = end // 3_600_000 * 3_600_000 - 23 * 3_600_000
    fields = ["function_id", "status", "started_at", "ended_at", "exec_ms", "queue_ms",
              "event", "output"]
    per: dict[str, dict[str, Any]] = {}
    filters: dict[str, int] = {"status=Failed": 0, "status=Running": 0,
                               "function=send-email&status=Failed": 0, "range=24h": 0,
                               "q=data.user_id = 42": 0, f"q={RARE_WORD}": 0,
                               "q=output.summary.tokens > 4000": 0,
                               'q=error.name = "SMTPError"': 0,
                               'q=error.name = "CRMUnavailable" or error.name = "CardDeclined"': 0}
    for at in range(0, len(ids), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for run_id in ids[at:at + 5000]:
                pipe.hmget(keys.run(run_id), fields)
            rows = await pipe.execute()
        for values in rows:
            fn, status, started, ended, ex, qu, event, output = (
                v.decode() if isinstance(v, bytes) else v for v in values)
            started_ms = int(started)
            entry = per.setdefault(fn, {"all": 0, "day": 0, "hour": 0, "failed_day": 0,
                                        "finished_day": 0, "exec_day": [], "queue_day": []})
            entry["all"] += 1
            if started_ms >= day_start:
                entry["day"] += 1
            if started_ms >= end - DAY_MS:
                filters["range=24h"] += 1
            if started_ms >= end - 3_600_000:
                entry["hour"] += 1
            if ended and int(ended) >= day_start and status in (
                    "Completed", "Failed", "Cancelled"):
                entry["finished_day"] += 1
                entry["failed_day"] += status == "Failed"
                entry["exec_day"].append(int(ex or 0))
                entry["queue_day"].append(int(qu or 0))
            filters["status=Failed"] += status == "Failed"
            filters["status=Running"] += status == "Running"
            filters["function=send-email&status=Failed"] += (
                fn == "send-email" and status == "Failed")
            ev = orjson.loads(event)
            out = orjson.loads(output) if output else None
            filters["q=data.user_id = 42"] += ev["data"].get("user_id") == 42
            filters[f"q={RARE_WORD}"] += RARE_WORD in str(ev["data"].get("note", ""))
            tokens = ((out or {}).get("summary") or {}).get("tokens") \
                if status == "Completed" and isinstance(out, dict) else None
            filters["q=output.summary.tokens > 4000"] += bool(tokens and tokens > 4000)
            name = out.get("name") if status == "Failed" and isinstance(out, dict) else None
            filters['q=error.name = "SMTPError"'] += name == "SMTPError"
            filters['q=error.name = "CRMUnavailable" or error.name = "CardDeclined"'] += (
                name in ("CRMUnavailable", "CardDeclined"))
    functions = {}
    for fn, entry in per.items():
        functions[fn] = {k: v for k, v in entry.items() if not k.endswith("_day")
                         or k in ("failed_day", "finished_day")}
        for kind in ("exec", "queue"):
            values = sorted(entry[f"{kind}_day"])
            for q in (50, 95, 99):
                functions[fn][f"{kind}_p{q}"] = values[max(0, -(-len(values) * q // 100) - 1)] \
                    if values else None
    retried = await _a_retried_run(redis, ids)
    return {"functions": functions, "filters": filters, "runs": len(ids),
            "retried_run": retried}


async def _a_retried_run(redis: Redis, ids: list[str]) -> str | None:
    from executor import keys

    for run_id in reversed(ids):
        raw = await redis.hget(keys.run_steps(run_id), _h("llm-summarize"))
        if raw and b'"RateLimitError"' in raw and b'"Completed"' in raw:
            return run_id
    return None


async def recount(directory: pathlib.Path) -> None:
    """Compute truth.json again from the saved store (no seeding)."""
    truth = json.loads((directory / "truth.json").read_text())
    process, url = _redis_server(directory)
    try:
        redis = Redis.from_url(url)
        fresh = await _truth(redis, truth["end_ms"])
        (directory / "truth.json").write_text(json.dumps({"end_ms": truth["end_ms"], **fresh},
                                                         indent=1))
        await redis.aclose()
    finally:
        _stop(process)


# -- serving the seeded store ------------------------------------------------------------------
def _redis_server(directory: pathlib.Path,
                  fresh: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    from tests.procs import free_port

    if fresh:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "dump.rdb").unlink(missing_ok=True)
    port = free_port()
    log = open(directory / "redis.log", "ab")  # the child keeps its own descriptor
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--dir", str(directory), "--dbfilename", "dump.rdb", "--appendonly",
         "no", "--save", ""], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    import redis as sync_redis

    client = sync_redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 300  # loading a big dump takes a while
    while True:
        try:
            if client.ping() and client.info("persistence").get("loading") == 0:
                break
        except sync_redis.exceptions.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not come up")
        time.sleep(0.2)
    return process, f"redis://127.0.0.1:{port}/0"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def _shift_clock(end_ms: int) -> None:
    """Make the wall clock read the seed's end (plus the time since): pages that show the
    last hour or day then show the seed's."""
    offset = end_ms / 1000 - time.time()
    real = time.time
    time.time = lambda: real() + offset  # type: ignore[assignment]


def _app(redis_url: str) -> tuple[Any, Any]:
    from fastapi import FastAPI

    import dashboard
    from executor.api import create_app
    from executor.service import Executor, Settings

    redis = Redis.from_url(redis_url)
    executor = Executor(redis, Settings(run_worker=False))
    app: FastAPI = create_app(executor, manage_lifecycle=False)
    dashboard.mount(app, executor)
    return app, executor


PAGES = [
    ("Functions", "/functions"),
    ("Function page", "/functions/send-email"),
    ("Runs", "/"),
    ("Runs status=Failed", "/?status=Failed"),
    ("Runs status=Running", "/?status=Running"),
    ("Runs function x status", "/?function=send-email&status=Failed"),
    ("Runs last 24 h", "/?range=24h"),
    ("Search data.user_id = 42", "/?q=data.user_id+%3D+42"),
    ("Search rare free text", f"/?q={RARE_WORD}"),
    ("Search output.summary.tokens > 4000", "/?q=output.summary.tokens+%3E+4000"),
    ('Search error.name = "SMTPError"', "/?q=error.name+%3D+%22SMTPError%22"),
    ("Search error or error", "/?q=error.name+%3D+%22CRMUnavailable%22+or+error.name+%3D+"
                              "%22CardDeclined%22"),
    ("Events", "/events"),
    ("Events search", "/events?q=data.user_id+%3D+42"),
]
TRUTH_KEYS = {
    "Runs status=Failed": "status=Failed", "Runs status=Running": "status=Running",
    "Runs function x status": "function=send-email&status=Failed",
    "Runs last 24 h": "range=24h", "Search data.user_id = 42": "q=data.user_id = 42",
    "Search rare free text": f"q={RARE_WORD}",
    "Search output.summary.tokens > 4000": "q=output.summary.tokens > 4000",
    'Search error.name = "SMTPError"': 'q=error.name = "SMTPError"',
    "Search error or error": 'q=error.name = "CRMUnavailable" or error.name = "CardDeclined"',
}


async def measure(directory: pathlib.Path, repeat: int) -> None:
    import httpx

    truth = json.loads((directory / "truth.json").read_text())
    process, url = _redis_server(directory)
    try:
        _shift_clock(truth["end_ms"])
        app, executor = _app(url)
        runs = truth["runs"]
        retried = truth.get("retried_run")
        pages = list(PAGES)
        if retried:
            pages.append(("Run page (retried step)", f"/runs/{retried}"))
        print(f"{runs:,} runs; {await executor.redis.dbsize():,} keys; code at {ROOT}")
        print(f"{'page':40} {'median':>9} {'p95':>9}  rows shown / true matches")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            for label, path in pages:
                times = []
                answer = None
                for _ in range(repeat):
                    started = time.perf_counter()
                    answer = await http.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                assert answer is not None
                if answer.status_code == 404:
                    print(f"{label:40} {'(no such page)':>20}")
                    continue
                shown = len(re.findall(r'<tr [^>]*data-id="', answer.text))
                note = ""
                if label.startswith("Events"):
                    names = re.findall(r'<tr data-id="[^"]+" data-score="\d+">\s*<td><a [^>]*>'
                                       r'([^<]*)</a>', answer.text)
                    internal = sum(1 for n in names if n.startswith("inngest/"))
                    note = f"{shown} rows, {internal} of them internal inngest/*"
                if label in TRUTH_KEYS:
                    expected = truth["filters"][TRUTH_KEYS[label]]
                    cont = "continue" in answer.text
                    note = f"{shown} / {expected}" + (" (asks to continue)" if cont else "")
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"{label:40} {statistics.median(times):8.1f}ms {p95:8.1f}ms  {note}",
                      flush=True)
        await _functions_accuracy(executor, truth)
    finally:
        _stop(process)


async def _functions_accuracy(executor: Any, truth: dict[str, Any]) -> None:
    """What the Functions page's numbers say against the truth, per function."""
    now = int(time.time() * 1000)
    read = executor.read
    print("\nFunctions page, last 24 h: runs started (shown / true), failed %, "
          "p50 shown vs true execution p50")
    if hasattr(read, "function_metrics"):
        found = (await read.function_metrics(now, "24h"))["functions"]

        def shown(fn: str) -> tuple[int, Any, Any, Any]:
            entry = found.get(fn) or {}
            return (entry.get("started", 0) + entry.get("ended", {}).get("Skipped", 0),
                    entry.get("failure_rate"), (entry.get("exec") or {}).get("p50"),
                    (entry.get("queue") or {}).get("p50"))
    else:
        stats = (await read.function_stats(now))["functions"]

        def shown(fn: str) -> tuple[int, Any, Any, Any]:
            entry = stats.get(fn) or {}
            return entry.get("day", 0), entry.get("failure_rate"), entry.get("p50_ms"), None
    for fn, true in sorted(truth["functions"].items()):
        day, rate, p50, q50 = shown(fn)
        true_rate = true["failed_day"] / true["finished_day"] if true["finished_day"] else None
        print(f"  {fn:16} runs {day:>6,} / {true['day']:>6,}   failed "
              f"{_pct(rate):>5} / {_pct(true_rate):>5}   exec p50 {_ms(p50):>8} / "
              f"{_ms(true['exec_p50']):>8}   queue p50 {_ms(q50):>8} / {_ms(true['queue_p50']):>8}")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}ms"


def screenshots(directory: pathlib.Path, out: pathlib.Path) -> None:
    import threading

    import httpx
    import uvicorn

    truth = json.loads((directory / "truth.json").read_text())
    process, url = _redis_server(directory)
    try:
        _shift_clock(truth["end_ms"])
        app, _ = _app(url)
        from tests.procs import free_port

        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        event = httpx.get(f"{base}/v1/events", params={"limit": 1}, timeout=30).json()
        paths = {"functions": "/functions", "function": "/functions/research-agent",
                 "runs": "/", "runs-failed": "/?status=Failed",
                 "runs-search": "/?q=output.summary.tokens+%3E+4000+and+data.user_id+%3C+100",
                 "runs-running": "/?status=Running", "events": "/events",
                 "events-internal": "/events?internal=1", "apps": "/apps"}
        if truth.get("retried_run"):
            paths["run-retried"] = f"/runs/{truth['retried_run']}"
            paths["viewer"] = f"/runs/{truth['retried_run']}/output/view?q=tokens"
        if event.get("data"):
            paths["event"] = f"/events/{event['data'][0]['id']}"
        import playwright.sync_api as pw

        out.mkdir(parents=True, exist_ok=True)
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                        args=["--headless", "--no-sandbox", "--disable-gpu"])
            for scheme in ("light", "dark"):
                context = browser.new_context(viewport={"width": 1280, "height": 900},
                                              color_scheme=scheme)
                page = context.new_page()
                for name, path in paths.items():
                    page.goto(base + path)
                    page.wait_for_selector("h1")
                    target = out / f"scale-{name}-{scheme}.png"
                    page.screenshot(path=str(target), full_page=True)
                    print(target)
                # a bulk action's preview (not confirmed): everything failed, rerun
                page.goto(base + "/?status=Failed")
                page.get_by_label(re.compile("Every run matching")).check()
                page.get_by_role("button", name="Rerun selected…").click()
                page.wait_for_selector("#bulk-preview")
                target = out / f"scale-bulk-preview-{scheme}.png"
                page.screenshot(path=str(target), full_page=True)
                print(target)
                context.close()
            browser.close()
        server.should_exit = True
        thread.join(10)
    finally:
        _stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("seed", "truth", "measure", "screenshots"))
    parser.add_argument("--dir", type=pathlib.Path, default=ROOT / ".bench-dashboard")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "test-output" / "screenshots")
    args = parser.parse_args()
    sys.setrecursionlimit(10_000)
    if args.command == "seed":
        asyncio.run(seed(args.dir, args.runs, args.seed))
    elif args.command == "truth":
        asyncio.run(recount(args.dir))
    elif args.command == "measure":
        asyncio.run(measure(args.dir, args.repeat))
    else:
        screenshots(args.dir, args.out)


if __name__ == "__main__":
    main()
