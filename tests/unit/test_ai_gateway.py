"""The AIGateway opcode's request (where the key goes, per format) and the token usage read
from providers' answers."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from executor.ai_gateway import provider_request, token_usage


def op(**opts: Any) -> dict[str, Any]:
    base = {"url": "https://models.example/v1/messages", "body": {"messages": []},
            "auth_key": "sk-secret", "format": "anthropic", "headers": {},
            "type": "step.ai.infer"}
    return {"id": "h", "op": "AIGateway", "opts": {**base, **opts}}


def test_anthropic_key_goes_in_x_api_key_and_the_body_is_sent_as_given() -> None:
    body = {"model": "claude", "messages": [{"role": "user", "content": "Say hi"}],
            "max_tokens": 100}
    request = provider_request(op(body=body, headers={"x-my-header": "my-value"}))
    assert request.headers == {"Content-Type": "application/json", "x-api-key": "sk-secret",
                               "x-my-header": "my-value"}
    assert orjson.loads(request.body) == body
    assert request.url == "https://models.example/v1/messages"


@pytest.mark.parametrize(("fmt", "header"), [
    ("openai-chat", "Bearer sk-secret"), ("bedrock", "sk-secret"), ("", "Bearer sk-secret")])
def test_other_formats_put_the_key_in_authorization(fmt: str, header: str) -> None:
    assert provider_request(op(format=fmt)).headers["Authorization"] == header


def test_gemini_key_goes_in_the_query() -> None:
    request = provider_request(op(format="gemini",
                                  url="https://g.example/v1/models/m:generateContent?alt=sse"))
    assert request.url == "https://g.example/v1/models/m:generateContent?alt=sse&key=sk-secret"
    assert "Authorization" not in request.headers and "x-api-key" not in request.headers


def test_the_ops_own_headers_win() -> None:
    request = provider_request(op(format="openai-chat",
                                  headers={"Authorization": "Bearer other"}))
    assert request.headers["Authorization"] == "Bearer other"


@pytest.mark.parametrize(("opts", "field"), [
    ({"url": "ftp://x"}, "opts.url"), ({"url": None}, "opts.url"),
    ({"headers": {"a": 1}}, "opts.headers"), ({"auth_key": 5}, "opts.auth_key")])
def test_malformed_opts_name_the_field(opts: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        provider_request(op(**opts))
    missing = op()
    del missing["opts"]["body"]
    with pytest.raises(ValueError, match=r"opts\.body"):
        provider_request(missing)


def test_token_usage_of_each_provider_style() -> None:
    anthropic = {"usage": {"input_tokens": 9, "output_tokens": 11,
                           "cache_read_input_tokens": 0}}
    openai_chat = {"usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}}
    openai_responses = {"usage": {"input_tokens": 3, "output_tokens": 5}}
    gemini = {"usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 2}}
    assert token_usage(anthropic) == {"input_tokens": 9, "output_tokens": 11}
    assert token_usage(openai_chat) == {"input_tokens": 21, "output_tokens": 4}
    assert token_usage(openai_responses) == {"input_tokens": 3, "output_tokens": 5}
    assert token_usage(gemini) == {"input_tokens": 7, "output_tokens": 2}
    for nothing in (None, "text", {"usage": "n/a"}, {"usage": {}}, {"choices": []}):
        assert token_usage(nothing) is None
