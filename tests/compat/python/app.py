"""An app written only with the official `inngest` package (PyPI, pinned in requirements.txt),
served with `inngest.fast_api.serve`. The compat test runs it with uvicorn from a venv of its
own against our executor; nothing here may import `inngest_like`.

Every step body appends `<run id> <what> <unix time>` to $COUNTER_FILE, so the test can count
how often a body really ran and when. A small ASGI wrapper (plain Starlette, no SDK involved)
records, for every call request, whether the executor sent `use_api` (and `ctx.fn_id`), so the
large-state test can prove the SDK took the fetch-by-API path.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
from typing import Any

import inngest
import inngest.fast_api
from fastapi import FastAPI
from inngest.experimental import ai

client = inngest.Inngest(app_id="compat-py")
COUNTER_FILE = os.environ.get("COUNTER_FILE", "/tmp/compat-py-counter.txt")
BIG_CHARS = int(1.8 * 1024 * 1024)


def mark(key: str, what: str) -> None:
    with open(COUNTER_FILE, "a") as out:
        out.write(f"{key} {what} {time.time():.6f}\n")


# -- several step.run ---------------------------------------------------------------------
@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="compat/steps"))
async def steps(ctx: inngest.Context) -> dict[str, Any]:
    step = ctx.step

    def first() -> int:
        mark(ctx.run_id, "first")
        return int(ctx.event.data["n"])

    n = await step.run("first", first)

    def second() -> dict[str, Any]:
        mark(ctx.run_id, "second")
        return {"doubled": n * 2, "tags": ["a", "b"]}

    doubled = await step.run("second", second)

    def third() -> None:
        mark(ctx.run_id, "third")

    nothing = await step.run("third", third)
    return {"n": n, "doubled": doubled["doubled"], "tags": doubled["tags"], "third": nothing}


# -- sleep ----------------------------------------------------------------------------------
@client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="compat/sleep"))
async def sleeper(ctx: inngest.Context) -> str:
    await ctx.step.run("before", lambda: mark(ctx.run_id, "before"))
    seconds = float(ctx.event.data.get("seconds", 1))
    await ctx.step.sleep("nap", datetime.timedelta(seconds=seconds))
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return "rested"


# -- wait_for_event -------------------------------------------------------------------------
@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="compat/wait"))
async def waiter(ctx: inngest.Context) -> dict[str, Any]:
    reply = await ctx.step.wait_for_event(
        "wait-reply",
        event="compat/reply",
        if_exp="async.data.id == event.data.id",
        timeout=datetime.timedelta(seconds=int(ctx.event.data.get("timeout_s", 20))),
    )
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    if reply is None:
        return {"matched": None}
    return {"matched": reply.data, "reply_name": reply.name, "reply_id": reply.id}


# -- invoke ---------------------------------------------------------------------------------
@client.create_function(fn_id="adder", trigger=inngest.TriggerEvent(event="compat/add-direct"))
async def adder(ctx: inngest.Context) -> dict[str, Any]:
    total = await ctx.step.run("sum", lambda: ctx.event.data["a"] + ctx.event.data["b"])
    return {"sum": total}


@client.create_function(fn_id="invoker", trigger=inngest.TriggerEvent(event="compat/invoke"))
async def invoker(ctx: inngest.Context) -> dict[str, Any]:
    result = await ctx.step.invoke(
        "call-adder", function=adder, data={"a": ctx.event.data["a"], "b": ctx.event.data["b"]}
    )
    after = await ctx.step.run("after", lambda: "after-invoke")
    return {"invoked": result, "after": after}


# -- group.parallel -------------------------------------------------------------------------
@client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event="compat/parallel"))
async def parallel(ctx: inngest.Context) -> dict[str, Any]:
    def part(name: str) -> str:
        mark(ctx.run_id, f"part-{name}")
        return f"{name}-done"

    results = await ctx.group.parallel(
        (
            lambda: ctx.step.run("part-a", part, "a"),
            lambda: ctx.step.run("part-b", part, "b"),
            lambda: ctx.step.run("part-c", part, "c"),
        )
    )
    total = await ctx.step.run("join", lambda: "+".join(results))
    return {"parts": list(results), "joined": total}


# -- a parallel group holding a step.run and a sleep -------------------------------------
@client.create_function(
    fn_id="parallel-mixed", trigger=inngest.TriggerEvent(event="compat/parallel-mixed")
)
async def parallel_mixed(ctx: inngest.Context) -> dict[str, Any]:
    def quick() -> str:
        mark(ctx.run_id, "quick")
        return "quick-done"

    results = await ctx.group.parallel(
        (
            lambda: ctx.step.run("quick", quick),
            lambda: ctx.step.sleep("short-nap", datetime.timedelta(seconds=1)),
        )
    )
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return {"results": list(results)}


# -- send_event fan-out ---------------------------------------------------------------------
@client.create_function(fn_id="fanout", trigger=inngest.TriggerEvent(event="compat/fanout"))
async def fanout(ctx: inngest.Context) -> dict[str, Any]:
    batch = ctx.event.data["batch"]
    ids = await ctx.step.send_event(
        "fan-out",
        [inngest.Event(name="compat/fanned", data={"batch": batch, "i": i}) for i in range(3)],
    )
    return {"ids": ids}


@client.create_function(fn_id="fan-target", trigger=inngest.TriggerEvent(event="compat/fanned"))
async def fan_target(ctx: inngest.Context) -> dict[str, Any]:
    data = ctx.event.data
    square = await ctx.step.run("square", lambda: data["i"] * data["i"])
    return {"batch": data["batch"], "i": data["i"], "square": square}


# -- errors ---------------------------------------------------------------------------------
@client.create_function(
    fn_id="retry-after", trigger=inngest.TriggerEvent(event="compat/retry-after"), retries=2
)
async def retry_after(ctx: inngest.Context) -> str:
    def flaky() -> str:
        mark(ctx.run_id, "flaky")
        if ctx.attempt == 0:
            raise inngest.RetryAfterError("rate limited", datetime.timedelta(seconds=2))
        return f"ok on attempt {ctx.attempt}"

    return await ctx.step.run("flaky", flaky)


@client.create_function(
    fn_id="non-retriable", trigger=inngest.TriggerEvent(event="compat/non-retriable"), retries=3
)
async def non_retriable(ctx: inngest.Context) -> str:
    def refuse() -> str:
        mark(ctx.run_id, "refuse")
        raise inngest.NonRetriableError("card declined")

    return await ctx.step.run("refuse", refuse)


async def doomed_failure(ctx: inngest.Context) -> dict[str, Any]:
    data = ctx.event.data
    mark(str(data["run_id"]), "on-failure")
    error = data["error"]
    return {
        "failed_run": data["run_id"],
        "function_id": data["function_id"],
        "message": error.get("message"),
        "original": data["event"],
        "trigger": ctx.event.name,
    }


@client.create_function(
    fn_id="doomed",
    trigger=inngest.TriggerEvent(event="compat/doomed"),
    retries=1,
    on_failure=doomed_failure,
)
async def doomed(ctx: inngest.Context) -> str:
    def explode() -> str:
        mark(ctx.run_id, "explode")
        raise ValueError(f"reactor {ctx.event.data['reactor']} melted")

    return await ctx.step.run("explode", explode)


# -- cancel on an event ---------------------------------------------------------------------
@client.create_function(
    fn_id="cancellable",
    trigger=inngest.TriggerEvent(event="compat/cancellable"),
    cancel=[inngest.Cancel(event="compat/cancel", if_exp="async.data.id == event.data.id")],
)
async def cancellable(ctx: inngest.Context) -> str:
    await ctx.step.run("before", lambda: mark(ctx.run_id, "before"))
    await ctx.step.sleep("long-nap", datetime.timedelta(seconds=60))
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return "woke up"


# -- large state: 3 x 1.8 MiB memos, so later calls carry use_api ---------------------------
@client.create_function(fn_id="big-state", trigger=inngest.TriggerEvent(event="compat/big"))
async def big_state(ctx: inngest.Context) -> dict[str, Any]:
    blobs = []
    for letter in "xyz":
        blobs.append(await ctx.step.run(f"big-{letter}", lambda c=letter: c * BIG_CHARS))
    # a new request after the state passed 4 MiB, whatever the SDK batches in one request
    await ctx.step.sleep("breath", datetime.timedelta(seconds=1))

    def summary() -> dict[str, Any]:
        mark(ctx.run_id, "summary")
        return {"lengths": [len(b) for b in blobs], "heads": [b[:3] for b in blobs]}

    result = await ctx.step.run("summary", summary)
    return {**result, "trigger": ctx.event.data}


# -- invoke failures: the callee's error, and a timeout ------------------------------------
@client.create_function(
    fn_id="fragile", trigger=inngest.TriggerEvent(event="compat/fragile-direct"), retries=0
)
async def fragile(ctx: inngest.Context) -> str:
    raise ValueError(f"fragile broke: {ctx.event.data.get('why')}")


@client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="compat/slow-direct"))
async def slow(ctx: inngest.Context) -> str:
    await ctx.step.sleep("dawdle", datetime.timedelta(seconds=30))
    return "too late"


@client.create_function(
    fn_id="invoke-errors", trigger=inngest.TriggerEvent(event="compat/invoke-errors")
)
async def invoke_errors(ctx: inngest.Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        await ctx.step.invoke("call-fragile", function=fragile, data={"why": "on purpose"})
        out["fragile"] = "no error"
    except inngest.StepError as err:
        out["fragile"] = {"name": err.name, "message": err.message}
    try:
        await ctx.step.invoke(
            "call-slow", function=slow, data={}, timeout=datetime.timedelta(seconds=1)
        )
        out["slow"] = "no error"
    except inngest.StepError as err:
        out["slow"] = {"name": err.name, "message": err.message}
    return out


# -- a function-level error (outside any step) is retried ----------------------------------
@client.create_function(
    fn_id="flaky-fn", trigger=inngest.TriggerEvent(event="compat/flaky-fn"), retries=2
)
async def flaky_fn(ctx: inngest.Context) -> str:
    mark(ctx.run_id, "body")
    if ctx.attempt == 0:
        raise RuntimeError("first attempt fails outside any step")
    return f"ok on attempt {ctx.attempt}"


# -- sleep_until a (memoized) moment ---------------------------------------------------------
@client.create_function(
    fn_id="sleep-until", trigger=inngest.TriggerEvent(event="compat/sleep-until")
)
async def sleep_until(ctx: inngest.Context) -> str:
    def target() -> str:
        mark(ctx.run_id, "before")
        moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=2)
        return moment.isoformat()

    wake = await ctx.step.run("target", target)
    await ctx.step.sleep_until("until", datetime.datetime.fromisoformat(wake))
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return wake


# -- flow control options, as the SDK renders them -----------------------------------------
@client.create_function(
    fn_id="debounced",
    trigger=inngest.TriggerEvent(event="compat/debounce"),
    debounce=inngest.Debounce(period=datetime.timedelta(seconds=1), key="event.data.group"),
)
async def debounced(ctx: inngest.Context) -> dict[str, Any]:
    return {"n": ctx.event.data["n"], "events": len(ctx.events)}


@client.create_function(
    fn_id="serial",
    trigger=inngest.TriggerEvent(event="compat/serial"),
    concurrency=[inngest.Concurrency(limit=1)],
)
async def serial(ctx: inngest.Context) -> str:
    async def work() -> str:
        mark(ctx.event.data["batch"], "start")
        await asyncio.sleep(0.4)
        mark(ctx.event.data["batch"], "end")
        return "worked"

    return await ctx.step.run("work", work)


@client.create_function(
    fn_id="idempotent",
    trigger=inngest.TriggerEvent(event="compat/idempotent"),
    idempotency="event.data.key",
)
async def idempotent(ctx: inngest.Context) -> str:
    return str(ctx.event.data["key"])


@client.create_function(
    fn_id="batched",
    trigger=inngest.TriggerEvent(event="compat/batch"),
    batch_events=inngest.Batch(max_size=3, timeout=datetime.timedelta(seconds=5)),
)
async def batched(ctx: inngest.Context) -> dict[str, Any]:
    return {"ns": sorted(e.data["n"] for e in ctx.events), "first": ctx.event.data["n"]}


@client.create_function(
    fn_id="throttled",
    trigger=inngest.TriggerEvent(event="compat/throttle"),
    throttle=inngest.Throttle(limit=1, period=datetime.timedelta(seconds=2)),
)
async def throttled(ctx: inngest.Context) -> str:
    await ctx.step.run("start", lambda: mark(ctx.event.data["batch"], "throttled-start"))
    return "ok"


@client.create_function(
    fn_id="rate-limited",
    trigger=inngest.TriggerEvent(event="compat/rate-limit"),
    rate_limit=inngest.RateLimit(limit=1, period=datetime.timedelta(minutes=1),
                                 key="event.data.key"),
)
async def rate_limited(ctx: inngest.Context) -> str:
    return "ran"


@client.create_function(
    fn_id="singleton",
    trigger=inngest.TriggerEvent(event="compat/singleton"),
    singleton=inngest.Singleton(mode="skip", key="event.data.key"),
)
async def singleton(ctx: inngest.Context) -> str:
    await ctx.step.sleep("hold", datetime.timedelta(seconds=2))
    return "held"


@client.create_function(
    fn_id="timed",
    trigger=inngest.TriggerEvent(event="compat/timed"),
    timeouts=inngest.Timeouts(finish=datetime.timedelta(seconds=1)),
)
async def timed(ctx: inngest.Context) -> str:
    await ctx.step.run("before", lambda: mark(ctx.run_id, "before"))
    await ctx.step.sleep("too-long", datetime.timedelta(seconds=20))
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return "finished"


@client.create_function(
    fn_id="prioritized",
    trigger=inngest.TriggerEvent(event="compat/priority"),
    priority=inngest.Priority(run="event.data.boost"),
)
async def prioritized(ctx: inngest.Context) -> int:
    return int(ctx.event.data["boost"])


# -- Python only: a sync handler (ContextSync, StepSync in a thread pool) ------------------
@client.create_function(fn_id="sync-steps", trigger=inngest.TriggerEvent(event="compat/sync"))
def sync_steps(ctx: inngest.ContextSync) -> dict[str, Any]:
    first = ctx.step.run("one", lambda: 1)
    ctx.step.sleep("blink", datetime.timedelta(milliseconds=500))
    second = ctx.step.run("two", lambda: first + 1)
    parts = ctx.group.parallel((lambda: ctx.step.run("p1", lambda: "p1"),
                                lambda: ctx.step.run("p2", lambda: "p2")))
    return {"first": first, "second": second, "parts": list(parts)}


# -- Python only: step.ai.infer, made by the executor against the provider named in the event
def model_adapter(data: dict[str, Any]) -> ai.BaseAdapter:
    if data.get("provider") == "openai":
        return ai.openai.Adapter(auth_key="sk-openai-fake", base_url=data["base_url"],
                                 model="gpt-fake")
    return ai.anthropic.Adapter(auth_key="sk-ant-fake-000", base_url=data["base_url"],
                                headers={"x-my-header": "my-value"}, model="claude-fake")


@client.create_function(
    fn_id="ai-infer", trigger=inngest.TriggerEvent(event="compat/ai"), retries=1
)
async def ai_infer(ctx: inngest.Context) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": ctx.event.data["say"]}], "max_tokens": 100}
    try:
        answer = await ctx.step.ai.infer("ask-model", adapter=model_adapter(ctx.event.data),
                                         body=body)
    except inngest.StepError as err:
        return {"error": {"name": err.name, "message": err.message}}
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return {"answer": answer}


@client.create_function(
    fn_id="ai-parallel", trigger=inngest.TriggerEvent(event="compat/ai-parallel")
)
async def ai_parallel(ctx: inngest.Context) -> list[Any]:
    adapter = model_adapter(ctx.event.data)

    def ask(what: str) -> Any:
        body = {"messages": [{"role": "user", "content": what}], "max_tokens": 10}
        return ctx.step.ai.infer(f"ask-{what}", adapter=adapter, body=body)

    answers = await ctx.group.parallel((lambda: ask("one"), lambda: ask("two")))
    return [a["echo"]["messages"][0]["content"] for a in answers]


# -- Python only: an error the SDK sends with a null stack (never raised: no traceback) ----
@client.create_function(
    fn_id="unexpected-step", trigger=inngest.TriggerEvent(event="compat/unexpected-step"),
    retries=0,
)
async def unexpected_step(ctx: inngest.Context) -> None:
    # a function that is not deterministic: a targeted call meets a step discovery did not
    if getattr(ctx.step, "_target_hashed_id", None) is not None:
        await ctx.step.run("unexpected", lambda: mark(ctx.run_id, "unexpected"))
    await ctx.group.parallel((lambda: ctx.step.run("p1", lambda: 1),
                              lambda: ctx.step.run("p2", lambda: 2)))


# -- Python only: a wait and an invoke beside a step.run in one parallel group ------------
@client.create_function(
    fn_id="parallel-pauses", trigger=inngest.TriggerEvent(event="compat/parallel-pauses")
)
async def parallel_pauses(ctx: inngest.Context) -> dict[str, Any]:
    def quick() -> str:
        mark(ctx.run_id, "quick")
        return "quick-done"

    done, reply, added = await ctx.group.parallel((
        lambda: ctx.step.run("quick", quick),
        lambda: ctx.step.wait_for_event(
            "wait-reply", event="compat/pp-reply", if_exp="async.data.key == event.data.key",
            timeout=datetime.timedelta(seconds=20)),
        lambda: ctx.step.invoke("call-adder", function=adder, data={"a": 1, "b": 2}),
    ))
    await ctx.step.run("after", lambda: mark(ctx.run_id, "after"))
    return {"quick": done, "reply": None if reply is None else reply.data, "added": added}


# -- Python only: a batch of ~1 MiB events (the official suite's large batch) ------------
@client.create_function(
    fn_id="big-batch", trigger=inngest.TriggerEvent(event="compat/big-batch"), retries=0,
    batch_events=inngest.Batch(max_size=4, timeout=datetime.timedelta(seconds=5)),
)
async def big_batch(ctx: inngest.Context) -> dict[str, Any]:
    return {"events": len(ctx.events), "sizes": [len(e.data["msg"]) for e in ctx.events]}


PY_ONLY = [ai_infer, ai_parallel, unexpected_step, parallel_pauses, big_batch]

FUNCTIONS = [
    steps, sleeper, waiter, adder, invoker, parallel, parallel_mixed, fanout, fan_target,
    retry_after, non_retriable, doomed, cancellable, big_state, fragile, slow, invoke_errors,
    flaky_fn, sleep_until, debounced, serial, idempotent, batched, throttled, rate_limited,
    singleton, timed, prioritized, sync_steps, *PY_ONLY,
]

fastapi_app = FastAPI()
inngest.fast_api.serve(fastapi_app, client, FUNCTIONS)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI wrapper: note `use_api` of each call request, then hand it to FastAPI as is."""
    if scope["type"] != "http" or scope["method"] != "POST":
        await fastapi_app(scope, receive, send)
        return
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body"))
    body = b"".join(chunks)
    try:
        parsed = json.loads(body)
        ctx = parsed.get("ctx") or {}
        use_api = f"{json.dumps(parsed.get('use_api'))}/{json.dumps(ctx.get('use_api'))}"
        fn_id = "set" if ctx.get("fn_id") else "unset"
        mark(str(ctx.get("run_id")), f"call:use_api={use_api}:fn_id={fn_id}")
    except (ValueError, AttributeError):
        pass
    delivered = False

    async def replay() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    await fastapi_app(scope, replay, send)
