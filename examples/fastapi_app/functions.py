"""The seeds' research agent, and a function that reacts to its `research/completed` event."""

from __future__ import annotations

import datetime
from typing import Any

import inngest_like as inngest

from .providers import RateLimited, extract, llm, search_web, travel

client = inngest.Inngest(app_id="llm-pipeline", is_production=False)


def report(usage: dict[str, Any]) -> None:
    """Meter what a provider call cost: the executor sums it per step, run and function,
    and stops the run at its budget."""
    inngest.usage(model=str(usage["model"]), input_tokens=int(usage["input_tokens"]),
                  output_tokens=int(usage["output_tokens"]), cost_usd=float(usage["cost_usd"]))


async def ask_llm(prompt: str, model: str = "offline-small", max_tokens: int = 60
                  ) -> dict[str, Any]:
    try:
        answer = await llm.complete(prompt, model, max_tokens)
    except RateLimited as exc:
        report(exc.usage)  # a rejected call is billed too
        # The provider said when to come back: retry this step then, not on the default table.
        raise inngest.RetryAfterError(str(exc), datetime.timedelta(seconds=exc.retry_after_s)) from exc
    report(answer)
    return answer


async def llm_summarize(texts: list[str], topic: str) -> dict[str, Any]:
    return await ask_llm(f"Summarize research on {topic}:\n" + "\n".join(texts))


async def llm_refine(summary: dict[str, Any], topic: str) -> dict[str, Any]:
    """A critique-and-rewrite pass with the large model: the step an agent loops on."""
    return await ask_llm(f"Critique and improve this summary of {topic}: {summary['text']}",
                         "offline-large", max_tokens=400)


async def research_failed(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    error = ctx.event.data["error"]
    topic = ctx.event.data["event"]["data"].get("topic")
    return await step.run("tell-requester", lambda: {
        "topic": topic, "stopped": f"{error['name']}: {error['message']}"})


@client.create_function(
    fn_id="research-agent",
    trigger=inngest.TriggerEvent(event="research/requested"),
    retries=3,
    budget=inngest.Budget(usd=0.02),  # a runaway agent stops here: no step or retry after
    on_failure=research_failed,
)
async def research_agent(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    topic = ctx.event.data["topic"]
    urls = await step.run("search-web", lambda: search_web(topic))
    contents = []
    for i, url in enumerate(urls[:5]):
        contents.append(await step.run(f"extract-{i}", lambda u=url: extract(u)))
    summary = await step.run("llm-summarize", llm_summarize, contents, topic)
    # an agent that keeps polishing as long as it is asked to (`rounds`): the budget, not
    # this loop, is what stops a runaway one
    for i in range(int(ctx.event.data.get("rounds", 0))):
        summary = await step.run(f"refine-{i}", llm_refine, summary, topic)
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


@client.create_function(
    fn_id="expense-approval",
    trigger=inngest.TriggerEvent(event="expense/submitted"),
)
async def expense_approval(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    """Human in the loop: the run waits (holding no worker) for `approval/decided` about this
    request. `GET /approve/{request_id}?approved=true` on this app sends that event."""
    request_id = ctx.event.data["request_id"]
    await step.run("notify-approver", lambda: f"approval requested for {request_id}")
    decision = await step.wait_for_event(
        "wait-for-decision",
        event="approval/decided",
        if_exp="async.data.request_id == event.data.request_id",
        timeout=datetime.timedelta(days=3),
    )
    if decision is None:
        return {"request_id": request_id, "status": "expired"}
    status = "approved" if decision.data.get("approved") else "rejected"
    await step.run("apply-decision", lambda: f"{request_id} {status}")
    return {"request_id": request_id, "status": status, "by": decision.data.get("by")}


async def on_booking_failed(ctx: inngest.Context, step: inngest.Step) -> str:
    error = ctx.event.data["error"]
    trip = ctx.event.data["event"]["data"]["trip_id"]
    return await step.run("alert-ops", lambda: f"trip {trip} failed: {error['message']}")


@client.create_function(
    fn_id="trip-booking",
    trigger=inngest.TriggerEvent(event="trip/requested"),
    retries=1,
    on_failure=on_booking_failed,
)
async def trip_booking(ctx: inngest.Context, step: inngest.Step) -> dict[str, Any]:
    """The seeds' booking saga: flight, hotel, itinerary; the itinerary fails, so the hotel
    then the flight are cancelled, each cancellation a memoized step."""
    trip_id = ctx.event.data["trip_id"]
    async with inngest.Saga(step) as saga:
        flight = await step.run(
            "book-flight", travel.book, "flight", trip_id, ctx.idempotency_key("book-flight"))
        saga.add("cancel-flight", travel.cancel, flight["id"])
        hotel = await step.run(
            "book-hotel", travel.book, "hotel", trip_id, ctx.idempotency_key("book-hotel"))
        saga.add("cancel-hotel", travel.cancel, hotel["id"])
        itinerary = await step.run("create-itinerary", travel.create_itinerary, flight, hotel)
    return {"flight": flight, "hotel": hotel, "itinerary": itinerary}


functions = [research_agent, notify_requester, expense_approval, trip_booking]
