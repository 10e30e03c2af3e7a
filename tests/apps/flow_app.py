"""The app the flow-control tests run as a real uvicorn process (app id "flow").

Step bodies append `<run id> <what> <time>` to $COUNTER_FILE so tests can see when each
run started and how many executed at once."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI

import inngest_like as inngest
import inngest_like.fast_api

client = inngest.Inngest(app_id="flow")
COUNTER_FILE = os.environ.get("COUNTER_FILE", "/tmp/inngest-like-flow.txt")


def mark(run_id: str, what: str) -> None:
    with open(COUNTER_FILE, "a") as out:
        out.write(f"{run_id} {what} {time.time():.6f}\n")


async def slow(ctx: inngest.Context, seconds: float) -> str:
    mark(ctx.run_id, "start")
    await asyncio.sleep(seconds)
    mark(ctx.run_id, "end")
    return str(ctx.event.data.get("n"))


@client.create_function(fn_id="conc", trigger=inngest.TriggerEvent(event="flow/conc"),
                        concurrency=inngest.Concurrency(limit=2))
async def conc(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(await step.run("work", slow, ctx, 0.4))


@client.create_function(fn_id="conc-keyed", trigger=inngest.TriggerEvent(event="flow/keyed"),
                        concurrency=[inngest.Concurrency(limit=1, key="event.data.user")])
async def conc_keyed(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(await step.run("work", slow, ctx, 0.5))


@client.create_function(fn_id="throttle", trigger=inngest.TriggerEvent(event="flow/throttle"),
                        throttle=inngest.Throttle(limit=2, period=2))
async def throttle(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(await step.run("work", slow, ctx, 0))


@client.create_function(fn_id="rate", trigger=inngest.TriggerEvent(event="flow/rate"),
                        rate_limit=inngest.RateLimit(limit=2, period=60, key="event.data.user"))
async def rate(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(ctx.event.data.get("n"))


@client.create_function(fn_id="debounce", trigger=inngest.TriggerEvent(event="flow/debounce"),
                        debounce=inngest.Debounce(period=1, key="event.data.user", timeout=3))
async def debounce(ctx: inngest.Context, step: inngest.Step) -> Any:
    mark(ctx.run_id, "start")
    return ctx.event.data.get("n")


@client.create_function(fn_id="batch", trigger=inngest.TriggerEvent(event="flow/batch"),
                        batch_events=inngest.Batch(max_size=5, timeout=2,
                                                   if_exp="event.data.n >= 0"))
async def batch(ctx: inngest.Context, step: inngest.Step) -> list[Any]:
    return [e.data.get("n") for e in ctx.events]


@client.create_function(fn_id="priority", trigger=inngest.TriggerEvent(event="flow/priority"),
                        concurrency=inngest.Concurrency(limit=1),
                        priority=inngest.Priority(run="event.data.vip ? 600 : 0"))
async def priority(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(await step.run("work", slow, ctx, float(ctx.event.data.get("hold", 0.1))))


@client.create_function(fn_id="single-skip", trigger=inngest.TriggerEvent(event="flow/skip"),
                        singleton=inngest.Singleton(mode="skip", key="event.data.user"))
async def single_skip(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.sleep("hold", 2)
    return str(ctx.event.data.get("n"))


@client.create_function(fn_id="single-cancel", trigger=inngest.TriggerEvent(event="flow/replace"),
                        singleton=inngest.Singleton(mode="cancel", key="event.data.user"))
async def single_cancel(ctx: inngest.Context, step: inngest.Step) -> str:
    await step.sleep("hold", 2)
    return str(ctx.event.data.get("n"))


@client.create_function(fn_id="idem", trigger=inngest.TriggerEvent(event="flow/order"),
                        idempotency="event.data.order_id")
async def idem(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(ctx.event.data["order_id"])


@client.create_function(fn_id="invoke-rate", trigger=inngest.TriggerEvent(event="flow/invoke-rate"))
async def invoke_rate(ctx: inngest.Context, step: inngest.Step) -> list[Any]:
    out: list[Any] = []
    for i in range(3):  # the target allows 2 runs per minute and key
        try:
            out.append(await step.invoke(f"call-{i}", function=rate, timeout=300,
                                         data={"n": i, "user": ctx.event.data["user"]}))
        except inngest.StepError as err:
            out.append(f"error: {err.message}")
    return out


app = FastAPI()
inngest_like.fast_api.serve(app, client, [conc, conc_keyed, throttle, rate, debounce, batch,
                                          priority, single_skip, single_cancel, idem,
                                          invoke_rate])
