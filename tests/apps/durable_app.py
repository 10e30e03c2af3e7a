"""The app the durability tests run as a real uvicorn process.

Every step body appends `<run id> <step>` to $COUNTER_FILE, so tests count how often each
step really ran across crashes and retries.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time
from typing import Any

import pydantic
from fastapi import FastAPI

import inngest_like as inngest
import inngest_like.fast_api

client = inngest.Inngest(app_id="durable")
COUNTER_FILE = os.environ.get("COUNTER_FILE", "/tmp/inngest-like-counter.txt")
STEP_DELAY = float(os.environ.get("STEP_DELAY", "0.05"))


def mark(run_id: str, what: str) -> None:
    with open(COUNTER_FILE, "a") as out:
        out.write(f"{run_id} {what} {time.time():.6f}\n")


@client.create_function(fn_id="ten-steps", trigger=inngest.TriggerEvent(event="test/ten-steps"))
async def ten_steps(ctx: inngest.Context, step: inngest.Step) -> int:
    total = 0

    async def body(i: int) -> int:
        mark(ctx.run_id, f"step-{i}")
        await asyncio.sleep(STEP_DELAY)
        return i

    for i in range(10):
        total += await step.run(f"step-{i}", body, i)
    return total


@client.create_function(
    fn_id="think-between", trigger=inngest.TriggerEvent(event="test/think-between"), retries=20
)
async def think_between(ctx: inngest.Context, step: inngest.Step) -> str:
    """Waits outside any step between two steps (as code awaiting something it need not
    remember would), the first time only: the first step is saved meanwhile."""
    def first() -> str:
        mark(ctx.run_id, "first")
        return "one"

    a = await step.run("first", first)
    again = f"{ctx.run_id} thinking " in pathlib.Path(COUNTER_FILE).read_text()  # noqa: ASYNC240
    mark(ctx.run_id, "thinking")
    await asyncio.sleep(0 if again else float(ctx.event.data.get("seconds", 2)))
    b = await step.run("second", lambda: "two")
    return f"{a}-{b}"


@client.create_function(
    fn_id="slow-second", trigger=inngest.TriggerEvent(event="test/slow-second"), retries=20
)
async def slow_second(ctx: inngest.Context, step: inngest.Step) -> str:
    def first() -> str:
        mark(ctx.run_id, "first")
        return "one"

    async def slow() -> str:
        mark(ctx.run_id, "slow-start")
        await asyncio.sleep(float(ctx.event.data.get("seconds", 2)))
        mark(ctx.run_id, "slow-end")
        return "two"

    a = await step.run("first", first)
    b = await step.run("slow", slow)
    return f"{a}-{b}"


@client.create_function(
    fn_id="flaky", trigger=inngest.TriggerEvent(event="test/flaky"), retries=4
)
async def flaky(ctx: inngest.Context, step: inngest.Step) -> str:
    def attempt() -> str:
        mark(ctx.run_id, "flaky")
        if ctx.attempt < int(ctx.event.data.get("fail_times", 2)):
            raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
        return f"ok after {ctx.attempt} failures"

    return str(await step.run("flaky", attempt))


@client.create_function(
    fn_id="always-fails", trigger=inngest.TriggerEvent(event="test/always-fails"), retries=2
)
async def always_fails(ctx: inngest.Context, step: inngest.Step) -> None:
    def broken() -> None:
        mark(ctx.run_id, "broken")
        raise ValueError("the provider is down")

    await step.run("broken", broken)


@client.create_function(
    fn_id="non-retriable", trigger=inngest.TriggerEvent(event="test/non-retriable"), retries=5
)
async def non_retriable(ctx: inngest.Context, step: inngest.Step) -> None:
    def refuse() -> None:
        mark(ctx.run_id, "refuse")
        raise inngest.NonRetriableError("card declined")

    await step.run("refuse", refuse)


@client.create_function(
    fn_id="compensate", trigger=inngest.TriggerEvent(event="test/compensate"), retries=1
)
async def compensate(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    def charge() -> None:
        mark(ctx.run_id, "charge")
        raise RuntimeError("gateway timeout")

    try:
        await step.run("charge", charge)
    except inngest.StepError as err:
        refund = await step.run("refund", lambda: mark(ctx.run_id, "refund") or "refunded")
        return {"compensated": refund, "error": err.message, "name": err.name}
    return {"compensated": None}


@client.create_function(
    fn_id="fn-error", trigger=inngest.TriggerEvent(event="test/fn-error"), retries=1
)
async def fn_error(ctx: inngest.Context, step: inngest.Step) -> None:
    mark(ctx.run_id, f"body-{ctx.attempt}")
    raise KeyError("missing field")


@client.create_function(
    fn_id="retry-after", trigger=inngest.TriggerEvent(event="test/retry-after"), retries=2
)
async def retry_after(ctx: inngest.Context, step: inngest.Step) -> str:
    def limited() -> str:
        mark(ctx.run_id, f"limited-{ctx.attempt}")
        if ctx.attempt == 0:
            raise inngest.RetryAfterError("429 from provider", 2000)  # ms, as the official SDK
        return "served"

    return str(await step.run("limited", limited))


class Summary(pydantic.BaseModel):
    text: str
    tokens: int


async def summarize(topic: str) -> Summary:
    return Summary(text=f"about {topic}", tokens=42)


@client.create_function(fn_id="models", trigger=inngest.TriggerEvent(event="test/models"))
async def models(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    summary = await step.run("summarize", summarize, ctx.event.data["topic"])
    # On replay this is rebuilt from the memo as a Summary, not a dict.
    kind = await step.run("kind", lambda: type(summary).__name__)
    return {"kind": kind, "tokens": summary.tokens}


@client.create_function(fn_id="sync-fn", trigger=inngest.TriggerEvent(event="test/sync"))
def sync_fn(ctx: inngest.Context, step: inngest.StepSync) -> int:
    a = step.run("a", lambda: 20)
    b = step.run("b", lambda x: x + 1, a)
    return int(a + b)


@client.create_function(fn_id="ctx-only", trigger=inngest.TriggerEvent(event="test/ctx-only"))
async def ctx_only(ctx: inngest.Context) -> str:
    step = ctx.step
    assert isinstance(step, inngest.Step)
    value = await step.run("only", lambda: "ctx.step works")
    return str(value)


@client.create_function(fn_id="fan-out", trigger=inngest.TriggerEvent(event="test/fan-out"))
async def fan_out(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    assert isinstance(step, inngest.Step)
    by_name = await step.send_event("test/fanned", data={"via": "name"})
    by_list = await step.send_event(
        "send-list", [inngest.Event(name="test/fanned", data={"via": "list"})]
    )
    by_client = await step.run(
        "client-send", lambda: client.send(inngest.Event(name="test/fanned", data={"via": "client"}))
    )
    return {"ids": by_name + by_list + by_client}


@client.create_function(fn_id="fan-in-a", trigger=inngest.TriggerEvent(event="test/fanned"))
async def fan_in_a(ctx: inngest.Context, step: inngest.Step) -> str:
    return str(ctx.event.data["via"])


@client.create_function(fn_id="fan-in-b", trigger=inngest.TriggerEvent(event="test/fanned"))
async def fan_in_b(ctx: inngest.Context, step: inngest.Step) -> str:
    return "b:" + str(ctx.event.data["via"])


@client.create_function(fn_id="parallel", trigger=inngest.TriggerEvent(event="test/parallel"))
async def parallel(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    async def part(name: str) -> str:
        mark(ctx.run_id, name)
        await asyncio.sleep(0.3)
        return name.upper()

    before = await step.run("before", lambda: "start")
    results = await ctx.group.parallel(
        tuple((lambda n=n: step.run(n, part, n)) for n in ("a", "b", "c"))
    )
    after = await step.run("after", lambda: "end")
    return {"before": before, "results": list(results), "after": after}


app = FastAPI()
inngest_like.fast_api.serve(
    app,
    client,
    [ten_steps, think_between, slow_second, flaky, always_fails, non_retriable, compensate, fn_error,
     retry_after, models, sync_fn, ctx_only, fan_out, fan_in_a, fan_in_b, parallel],
)
