"""A fake model provider (Anthropic and OpenAI style) for `step.ai.infer` tests, served by
uvicorn on 127.0.0.1 by the test. Every request it receives is appended to $PROVIDER_LOG as
one JSON line (method, path, headers, body), so tests see exactly what the executor sent.

The first path segment picks the behaviour: `/ok/...` answers at once; `/flaky-<key>/...`
answers 503 (with Retry-After: 1) to the first request for `<key>`, then like `/ok`;
`/down/...` always answers 500. The rest of the path picks the style: `.../messages`
(Anthropic) or `.../chat/completions` (OpenAI).
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

LOG = os.environ.get("PROVIDER_LOG", "/tmp/fake-provider.jsonl")
_seen: set[str] = set()

ANTHROPIC_ANSWER = {
    "id": "msg_fake", "type": "message", "role": "assistant", "model": "claude-fake-1",
    "content": [{"type": "text", "text": "Hi there!"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 9, "output_tokens": 11, "cache_read_input_tokens": 0},
}
OPENAI_ANSWER = {
    "id": "chatcmpl-fake", "object": "chat.completion", "model": "gpt-fake-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25},
}


def note(entry: dict[str, Any]) -> None:
    with open(LOG, "a") as out:  # one short line per request: a blocking write is fine here
        out.write(json.dumps(entry) + "\n")


async def answer(request: Request) -> JSONResponse:
    body = await request.body()
    note({"method": request.method, "path": request.url.path, "query": request.url.query,
          "headers": dict(request.headers), "body": body.decode(errors="replace")})
    mode = request.path_params["mode"]
    if mode == "down":
        return JSONResponse({"type": "error", "error": {"message": "overloaded"}},
                            status_code=500)
    if mode.startswith("flaky-") and mode not in _seen:
        _seen.add(mode)
        return JSONResponse({"error": "try again"}, status_code=503,
                            headers={"Retry-After": "1"})
    if request.path_params["rest"].endswith("chat/completions"):
        return JSONResponse(OPENAI_ANSWER)
    echo = json.loads(body) if body else None
    return JSONResponse({**ANTHROPIC_ANSWER, "echo": echo})


app = Starlette(routes=[Route("/{mode}/{rest:path}", answer, methods=["POST"])])
