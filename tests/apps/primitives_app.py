"""The app the step-primitive tests run as a real uvicorn process: sleeps, waits, invokes,
asyncio.gather, on_failure, cancellation, timeouts, rerun, idempotency keys and cron.

Every step body appends `<key> <what> <unix time>` to $COUNTER_FILE (the key is the run id
unless said otherwise), so tests count how often each body really ran and when. The cron
functions are served (alone) only when PRIMITIVES_CRON=1, so that their ticks do not load
the stacks of the other tests.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from typing import Any

from fastapi import FastAPI

import inngest_like as inngest
import inngest_like.fast_api

client = inngest.Inngest(app_id="primitives")
COUNTER_FILE = os.environ.get("COUNTER_FILE", "/tmp/inngest-like-primitives-counter.txt")
CRON = os.environ.get("PRIMITIVES_CRON") == "1"


def mark(key: str, what: str) -> None:
    with open(COUNTER_FILE, "a") as out:
        out.write(f"{key} {what} {time.time():.6f}\n")


# -- sleeps -------------------------------------------------------------------------------
@client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="prim/sleep"))
async def sleeper(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.run("before", lambda: mark(ctx.run_id, "before"))
    await step.sleep("nap", float(ctx.event.data.get("seconds", 3)))
    await step.run("after", lambda: mark(ctx.run_id, "after"))
    return "rested"


@client.create_function(
    fn_id="sleep-past", trigger=inngest.TriggerEvent(event="prim/sleep-past")
)
async def sleep_past(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.run("before", lambda: mark(ctx.run_id, "before"))
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    await step.sleep_until("until-the-past", an_hour_ago)
    await step.run("after", lambda: mark(ctx.run_id, "after"))
    return "no wait"


# -- wait_for_event -----------------------------------------------------------------------
@client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="prim/wait"))
async def waiter(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    data = ctx.event.data
    lookback = data.get("lookback")
    reply = await step.wait_for_event(
        "wait-reply",
        event="prim/reply",
        if_exp="async.data.id == event.data.id",
        timeout=float(data.get("timeout", 10)),
        lookback=None if lookback is None else float(lookback),
    )
    await step.run("after", lambda: mark(ctx.run_id, "after"))
    return {"matched": None if reply is None else reply.data}


# -- invoke -------------------------------------------------------------------------------
@client.create_function(fn_id="add", trigger=inngest.TriggerEvent(event="prim/add-direct"))
async def add(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    total = await step.run("sum", lambda: ctx.event.data["a"] + ctx.event.data["b"])
    return {"sum": total}


@client.create_function(
    fn_id="ledger", trigger=inngest.TriggerEvent(event="prim/ledger-direct"), retries=0
)
async def ledger(ctx: inngest.Context, step: inngest.Step) -> None:
    def refuse() -> None:
        mark(ctx.run_id, "refuse")
        raise ValueError(f"the ledger refused {ctx.event.data['amount']} EUR")

    await step.run("debit", refuse)


@client.create_function(fn_id="slowpoke", trigger=inngest.TriggerEvent(event="prim/slow-direct"))
async def slowpoke(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.sleep("dawdle", float(ctx.event.data.get("seconds", 5)))
    return "too late"


@client.create_function(fn_id="invoker", trigger=inngest.TriggerEvent(event="prim/invoke"))
async def invoker(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    mode = ctx.event.data["mode"]
    try:
        if mode == "ok":
            result = await step.invoke("call-add", function=add, data={"a": 2, "b": 40})
        elif mode == "fail":
            result = await step.invoke("call-ledger", function="primitives-ledger",
                                       data={"amount": 125})
        else:
            result = await step.invoke("call-slowpoke", function=slowpoke,
                                       data={"seconds": 6}, timeout=1)
    except inngest.StepError as err:
        return {"caught": {"name": err.name, "message": err.message}}
    return {"result": result}


# -- asyncio.gather -----------------------------------------------------------------------
@client.create_function(fn_id="gather", trigger=inngest.TriggerEvent(event="prim/gather"))
async def gather(ctx: inngest.Context, step: inngest.Step) -> list[str]:
    async def part(name: str) -> str:
        mark(ctx.run_id, name)
        await asyncio.sleep(0.3)
        return name.upper()

    results = await asyncio.gather(
        step.run("a", part, "a"), step.run("b", part, "b"), step.run("c", part, "c")
    )
    return list(results)


# -- waits and invokes beside other steps, in parallel ------------------------------------
@client.create_function(
    fn_id="parallel-pauses", trigger=inngest.TriggerEvent(event="prim/parallel-pauses")
)
async def parallel_pauses(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    def quick() -> str:
        mark(ctx.run_id, "quick")
        return "quick-done"

    def wait() -> Any:
        return step.wait_for_event("wait-reply", event="prim/pp-reply", timeout=20,
                                   if_exp="async.data.key == event.data.key")

    def invoke() -> Any:
        return step.invoke("call-add", function=add, data={"a": 1, "b": 2})

    if ctx.event.data.get("gather"):
        done, reply, added = await asyncio.gather(step.run("quick", quick), wait(), invoke())
    else:
        done, reply, added = await ctx.group.parallel(
            (lambda: step.run("quick", quick), wait, invoke))
    await step.run("after", lambda: mark(ctx.run_id, "after"))
    return {"quick": done, "reply": None if reply is None else reply.data, "added": added}


# -- on_failure ---------------------------------------------------------------------------
async def on_doomed_failure(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    failed = ctx.event.data
    mark(failed["run_id"], "on-failure")
    return {"failed_run": failed["run_id"], "function_id": failed["function_id"],
            "message": failed["error"]["message"], "original": failed["event"]}


@client.create_function(
    fn_id="doomed", trigger=inngest.TriggerEvent(event="prim/doomed"), retries=1,
    on_failure=on_doomed_failure,
)
async def doomed(ctx: inngest.Context, step: inngest.Step) -> None:
    def explode() -> None:
        mark(ctx.run_id, "explode")
        raise RuntimeError(f"reactor {ctx.event.data['reactor']} melted")

    await step.run("explode", explode)


# -- cancellation and timeouts ------------------------------------------------------------
async def nap_between_steps(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.run("before", lambda: mark(ctx.run_id, "before"))
    await step.sleep("nap", float(ctx.event.data.get("seconds", 30)))
    mark(ctx.run_id, "resumed")  # outside a step: any call after the nap leaves a mark
    await step.run("after", lambda: mark(ctx.run_id, "after"))
    return "woke up"


cancellable = client.create_function(
    fn_id="cancellable", trigger=inngest.TriggerEvent(event="prim/cancellable"),
    cancel=[inngest.Cancel(event="prim/cancel", if_exp="async.data.id == event.data.id")],
)(nap_between_steps)

bystander = client.create_function(
    fn_id="bystander", trigger=inngest.TriggerEvent(event="prim/bystander"),
)(nap_between_steps)

finish_timeout = client.create_function(
    fn_id="finish-timeout", trigger=inngest.TriggerEvent(event="prim/finish-timeout"),
    timeouts=inngest.Timeouts(finish=2),
)(nap_between_steps)


# -- rerun --------------------------------------------------------------------------------
@client.create_function(fn_id="three-steps", trigger=inngest.TriggerEvent(event="prim/three"))
async def three_steps(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    key = ctx.event.data["key"]  # the same in a rerun, unlike the run id

    def body(name: str) -> str:
        mark(key, name)
        return f"{name}@{time.time():.6f}"

    one = await step.run("one", body, "one")
    two = await step.run("two", body, "two")
    three = await step.run("three", body, "three")
    return {"one": one, "two": two, "three": three}


# -- eager first calls --------------------------------------------------------------------
@client.create_function(fn_id="first-line",
                        trigger=inngest.TriggerEvent(event="prim/first-line"))
async def first_line(ctx: inngest.Context, step: inngest.Step) -> str:
    key = ctx.event.data["key"]
    mark(key, "line")  # code before the first step: every call runs it
    await step.run("charge", lambda: mark(key, "charge"))
    return "charged"


# -- idempotency keys ---------------------------------------------------------------------
@client.create_function(
    fn_id="idempotent-charge", trigger=inngest.TriggerEvent(event="prim/charge"), retries=3
)
async def idempotent_charge(ctx: inngest.Context, step: inngest.Step) -> str:
    def charge() -> str:
        key = ctx.idempotency_key("charge")
        mark(ctx.run_id, f"charge-key={key}")
        if ctx.attempt < 2:
            raise RuntimeError(f"payment gateway timeout on attempt {ctx.attempt}")
        return key

    return str(await step.run("charge", charge))


# -- cron ---------------------------------------------------------------------------------
def ticker(fn_id: str, schedule: str) -> inngest.Function:
    @client.create_function(fn_id=fn_id, trigger=inngest.TriggerCron(cron=schedule))
    async def tick(ctx: inngest.Context, step: inngest.Step) -> str:
        scheduled = str(ctx.event.data["scheduledAt"])
        await step.run("tick", lambda: mark(ctx.run_id, f"{fn_id}={scheduled}"))
        return scheduled

    return tick


TICKERS = [ticker("every-second", "@every 1s"), ticker("every-four-seconds", "@every 4s")]

FUNCTIONS = [sleeper, sleep_past, waiter, add, ledger, slowpoke, invoker, gather,
             parallel_pauses, doomed,
             cancellable, bystander, finish_timeout, three_steps, first_line, idempotent_charge]

app = FastAPI()
inngest_like.fast_api.serve(app, client, TICKERS if CRON else FUNCTIONS)
