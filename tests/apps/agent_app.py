"""The app the agent-operations tests run as a real uvicorn process (issue 13): metered LLM
stand-ins, a looping agent under a budget, steps that hang or go silent, a stalled step, and
a traced step that makes its own span.

Every step body appends `<run id> <what> <time>` to $COUNTER_FILE, so tests count attempts
and measure the gaps between them. With OTEL_EXPORTER_OTLP_ENDPOINT set, the app exports
its own spans (as any traced app would): the ones made inside steps must nest under the
executor's step spans.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI

import inngest_like as inngest
import inngest_like.fast_api

client = inngest.Inngest(app_id="agent")
COUNTER_FILE = os.environ.get("COUNTER_FILE", "/tmp/inngest-like-agent-counter.txt")
HANG_S = 8.0  # far longer than any timeout below: only the executor ending the call helps


def mark(run_id: str, what: str) -> None:
    with open(COUNTER_FILE, "a") as out:
        out.write(f"{run_id} {what} {time.time():.6f}\n")


def llm_call(cost_usd: float, input_tokens: int = 100, output_tokens: int = 20) -> None:
    """The provider bills each call, answered or not."""
    inngest.usage(model="sim-1", input_tokens=input_tokens, output_tokens=output_tokens,
                  cost_usd=cost_usd)


# -- cost meters -----------------------------------------------------------------------------
@client.create_function(fn_id="metered", trigger=inngest.TriggerEvent(event="agent/metered"),
                        retries=3)
async def metered(ctx: inngest.Context, step: inngest.Step) -> str:
    async def flaky_llm() -> str:
        mark(ctx.run_id, "llm")
        llm_call(0.01)
        llm_call(0.005, 50, 10)  # a follow-up call in the same attempt: they add up
        if ctx.attempt < 2:
            raise RuntimeError(f"429 Too Many Requests (attempt {ctx.attempt})")
        return "answer"

    async def tool() -> str:
        return "no usage here"

    answer = await step.run("llm", flaky_llm)
    await step.run("tool", tool)
    return str(answer)


async def on_agent_failed(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    error = ctx.event.data["error"]

    def alert() -> dict[str, Any]:
        mark(ctx.event.data["run_id"], "on-failure")
        return {"failed_run": ctx.event.data["run_id"], "name": error["name"],
                "message": error["message"]}

    return await step.run("alert", alert)


@client.create_function(fn_id="looping-agent", trigger=inngest.TriggerEvent(event="agent/loop"),
                        budget=inngest.Budget(usd=0.05), on_failure=on_agent_failed)
async def looping_agent(ctx: inngest.Context, step: inngest.Step) -> str:
    """An agent that never decides it is done: each thought costs $0.01."""

    async def think(i: int) -> str:
        mark(ctx.run_id, f"think-{i}")
        llm_call(0.01)
        return f"thought {i}"

    for i in range(500):
        await step.run(f"think-{i}", think, i)
    return "done thinking"


# -- step timeouts and heartbeats ------------------------------------------------------------
@client.create_function(fn_id="hangs", trigger=inngest.TriggerEvent(event="agent/hangs"),
                        retries=2)
async def hangs(ctx: inngest.Context, step: inngest.Step) -> str:
    async def slow() -> str:
        mark(ctx.run_id, f"slow-{ctx.attempt}")
        llm_call(0.02)  # billed, then the provider goes quiet
        if ctx.attempt == 0:
            await asyncio.sleep(HANG_S)
        return f"answered on attempt {ctx.attempt}"

    return str(await step.run("slow", slow, timeout=1))


@client.create_function(fn_id="fn-timeout", trigger=inngest.TriggerEvent(event="agent/fn-timeout"),
                        retries=2, step_timeout=1)
async def fn_timeout(ctx: inngest.Context, step: inngest.Step) -> str:
    async def slow() -> str:
        mark(ctx.run_id, f"slow-{ctx.attempt}")
        if ctx.attempt == 0:
            await asyncio.sleep(HANG_S)
        return "fine"

    return str(await step.run("slow", slow))


@client.create_function(fn_id="silent", trigger=inngest.TriggerEvent(event="agent/silent"),
                        retries=2)
async def silent(ctx: inngest.Context, step: inngest.Step) -> str:
    async def long_job() -> str:
        mark(ctx.run_id, f"job-{ctx.attempt}")
        if ctx.attempt == 0:  # beats a little, then hangs without a word
            for _ in range(2):
                await inngest.heartbeat()
                await asyncio.sleep(0.25)
            await asyncio.sleep(HANG_S)
        for _ in range(12):  # 3 s of work, beating all along: longer than the timeout
            await inngest.heartbeat()
            await asyncio.sleep(0.25)
        mark(ctx.run_id, "job-done")
        return "finished while beating"

    return str(await step.run("long-job", long_job, heartbeat_timeout=1))


# -- stalls ------------------------------------------------------------------------------------
@client.create_function(fn_id="stalls", trigger=inngest.TriggerEvent(event="agent/stalls"),
                        stall_threshold=1)
async def stalls(ctx: inngest.Context, step: inngest.Step) -> str:
    async def quiet_provider() -> str:
        mark(ctx.run_id, "provider")
        await asyncio.sleep(float(ctx.event.data.get("seconds", 3)))
        return "answered at last"

    await step.sleep("nap", 2)  # sleeping longer than the threshold is no stall
    return str(await step.run("provider", quiet_provider))


@client.create_function(
    fn_id="stall-alert",
    trigger=inngest.TriggerEvent(event="inngest/function.stalled",
                                 expression="event.data.function_id == 'agent-stalls'"))
async def stall_alert(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    def page() -> dict[str, Any]:
        mark(ctx.event.data["run_id"], "stall-alert")
        return {"run_id": ctx.event.data["run_id"], "reason": ctx.event.data["reason"]}

    return await step.run("page-on-call", page)


# -- traces ------------------------------------------------------------------------------------
def _tracer() -> Any:
    """The app's own tracing, set up the standard way when the OTEL_* variables ask."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "agent-app"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("agent-app")


tracer = _tracer()


@client.create_function(fn_id="traced", trigger=inngest.TriggerEvent(event="agent/traced"),
                        retries=2)
async def traced(ctx: inngest.Context, step: inngest.Step) -> str:
    async def search() -> str:
        mark(ctx.run_id, f"search-{ctx.attempt}")
        with tracer.start_as_current_span("vector-search") as span:  # the user's own span
            span.set_attribute("attempt", ctx.attempt)
            llm_call(0.003)
            if ctx.attempt == 0:
                raise RuntimeError("index warming up")
        return "hits"

    hits = await step.run("search", search)
    return str(await step.run("summarize", lambda: f"summary of {hits}"))


app = FastAPI()
inngest_like.fast_api.serve(
    app, client, [metered, looping_agent, hangs, fn_timeout, silent, stalls, stall_alert,
                  traced])
