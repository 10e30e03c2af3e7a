"""The seeds' research agent, and a function that reacts to its `research/completed` event."""

from __future__ import annotations

import datetime
from typing import Any

import inngest_like as inngest

from .providers import RateLimited, extract, llm, search_web

client = inngest.Inngest(app_id="llm-pipeline", is_production=False)


async def llm_summarize(texts: list[str], topic: str) -> dict[str, Any]:
    prompt = f"Summarize research on {topic}:\n" + "\n".join(texts)
    try:
        return await llm.complete(prompt)
    except RateLimited as exc:
        # The provider said when to come back: retry this step then, not on the default table.
        raise inngest.RetryAfterError(str(exc), datetime.timedelta(seconds=exc.retry_after_s)) from exc


@client.create_function(
    fn_id="research-agent",
    trigger=inngest.TriggerEvent(event="research/requested"),
    retries=3,
)
async def research_agent(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    topic = ctx.event.data["topic"]
    urls = await step.run("search-web", lambda: search_web(topic))
    contents = []
    for i, url in enumerate(urls[:5]):
        contents.append(await step.run(f"extract-{i}", lambda u=url: extract(u)))
    summary = await step.run("llm-summarize", llm_summarize, contents, topic)
    await step.send_event("research/completed", data={"topic": topic, "summary": summary})
    return {"summary": summary, "sources": urls[:5]}


notifications: list[dict[str, Any]] = []


@client.create_function(
    fn_id="notify-requester",
    trigger=inngest.TriggerEvent(event="research/completed"),
)
async def notify_requester(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    def notify() -> dict[str, Any]:
        message = {
            "topic": ctx.event.data["topic"],
            "text": ctx.event.data["summary"]["text"],
            "cost_usd": ctx.event.data["summary"]["cost_usd"],
        }
        notifications.append(message)
        return message

    return await step.run("notify", notify)


functions = [research_agent, notify_requester]
