"""Offline stand-ins for the research agent's providers: web search, page fetch, and an LLM.

They answer deterministically from their inputs, so the example runs with no network and
tests can assert on its output. The LLM reports its usage (tokens, cost) with each answer,
and now and then answers like a rate-limited provider (HTTP 429 with Retry-After, the
failure durable execution is for) that still bills the prompt it read.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

PRICE_PER_1K_TOKENS_USD = {"offline-small": 0.002, "offline-large": 0.01}


class RateLimited(Exception):
    """What a provider's HTTP 429 becomes: retry no sooner than `retry_after_s`. `usage`:
    what the rejected call was billed anyway (its prompt)."""

    def __init__(self, retry_after_s: float, usage: dict[str, object]) -> None:
        super().__init__(f"429 Too Many Requests (retry after {retry_after_s:g} s)")
        self.retry_after_s = retry_after_s
        self.usage = usage


def _digest(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


async def search_web(query: str) -> list[str]:
    await asyncio.sleep(0.005)
    slug = "-".join(query.lower().split()) or "empty"
    return [f"https://example.org/{slug}/{i}-{_digest(query, str(i))[:8]}" for i in range(7)]


async def extract(url: str) -> str:
    await asyncio.sleep(0.005)
    return f"Notes from {url}: finding {_digest(url)[:12]} supports the topic."


class OfflineLLM:
    """Answers deterministically; every `rate_limit_every`-th call is a 429."""

    def __init__(self, rate_limit_every: int = 3) -> None:
        self.rate_limit_every = rate_limit_every
        self._calls = 0
        self._lock = threading.Lock()

    async def complete(self, prompt: str, model: str = "offline-small",
                       max_tokens: int = 60) -> dict[str, object]:
        with self._lock:
            self._calls += 1
            throttled = self.rate_limit_every > 0 and self._calls % self.rate_limit_every == 0
        price = PRICE_PER_1K_TOKENS_USD[model] / 1000
        input_tokens = len(prompt.split())
        if throttled:
            raise RateLimited(retry_after_s=1, usage={
                "model": model, "input_tokens": input_tokens, "output_tokens": 0,
                "cost_usd": round(input_tokens * price, 6)})
        await asyncio.sleep(0.01)
        tokens = input_tokens + max_tokens
        return {
            "text": f"Summary {_digest(prompt)[:10]}: {input_tokens} words reviewed.",
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": max_tokens,
            "tokens": tokens,
            "cost_usd": round(tokens * price, 6),
        }


llm = OfflineLLM(int(os.environ.get("EXAMPLE_LLM_RATE_LIMIT_EVERY", "3")))


class TravelDesk:
    """Offline flight and hotel bookings. Creating the itinerary always fails, so the example
    shows the saga undoing the hotel, then the flight."""

    def __init__(self) -> None:
        self.bookings: dict[str, str] = {}  # booking id -> "booked" | "cancelled"
        self.log: list[str] = []

    async def book(self, kind: str, trip_id: str, idempotency_key: str) -> dict[str, str]:
        # the key makes a retried booking return the same reservation, as real APIs do
        booking_id = f"{kind}-{_digest(idempotency_key)[:8]}"
        if booking_id not in self.bookings:
            self.bookings[booking_id] = "booked"
            self.log.append(f"book {booking_id}")
        return {"id": booking_id, "trip": trip_id}

    async def cancel(self, booking_id: str) -> str:
        if self.bookings.get(booking_id) == "booked":
            self.bookings[booking_id] = "cancelled"
            self.log.append(f"cancel {booking_id}")
        return booking_id

    async def create_itinerary(self, flight: dict[str, str], hotel: dict[str, str]) -> str:
        raise RuntimeError("itinerary service unavailable")


travel = TravelDesk()
