"""The SDK client keeps one connection pool (no client per `send`, which leaked sockets),
closes it on request, and retries API calls with the fallback signing key on 401/403
(issue 10.4: keys are rotated on the server first)."""

from __future__ import annotations

import secrets

import httpx
import pytest

import inngest_like as inngest
from inngest_like import _client, signing

KEY_NEW = "signkey-prod-" + secrets.token_hex(32)
KEY_OLD = "signkey-prod-" + secrets.token_hex(32)


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[httpx.AsyncClient]:
    """Every pool the SDK makes, answering like an executor that knows only KEY_OLD."""
    made: list[httpx.AsyncClient] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/e/"):
            return httpx.Response(200, json={"ids": ["01J"], "status": 200})
        if request.headers.get("authorization") != f"Bearer {signing.bearer(KEY_OLD)}":
            return httpx.Response(401, json={"error": "unauthorized", "status": 401})
        return httpx.Response(200, json={"ok": True})

    def factory(**kwargs: object) -> httpx.AsyncClient:
        made.append(httpx.AsyncClient(transport=httpx.MockTransport(answer)))
        return made[-1]

    monkeypatch.setattr(_client, "http_client", factory)
    return made


async def test_sends_share_one_pool_until_closed(pools: list[httpx.AsyncClient]) -> None:
    client = inngest.Inngest(app_id="app", is_production=False)
    for _ in range(3):
        assert await client.send(inngest.Event(name="test/a")) == ["01J"]
    assert len(pools) == 1
    await client.aclose()
    assert pools[0].is_closed


async def test_api_calls_retry_with_the_fallback_key(pools: list[httpx.AsyncClient]) -> None:
    client = inngest.Inngest(app_id="app", is_production=True, signing_key=KEY_NEW,
                             signing_key_fallback=KEY_OLD)
    answer = await client.api_request("GET", "http://executor/v0/runs/r/actions")
    assert answer.status_code == 200
    only_new = inngest.Inngest(app_id="app", is_production=True, signing_key=KEY_NEW)
    assert (await only_new.api_request("GET", "http://executor/v1/x")).status_code == 401
    await client.aclose()
    await only_new.aclose()
