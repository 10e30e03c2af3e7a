"""`step.ai.infer` (the AIGateway opcode): the executor, not the app, calls the model
provider, so the app holds no connection open while a model thinks.

The SDK reports the request in the op's `opts` (protocol §6): `url`, `body` (sent as given),
`headers`, `auth_key` and `format`, which says where the key goes: `anthropic` in
`x-api-key`, `gemini` in the `key` query parameter, `bedrock` as the bare `Authorization`,
anything else (`openai-chat`, ...) as `Authorization: Bearer`. A 2xx answer is the step's
output (`{"data": <answer>}`); anything else is a failed attempt, retried like any step, and
after the last one the step's error (`AIGatewayError`) is raised in the function. The token
usage the answer reports is kept on the step record (`usage: {input_tokens, output_tokens}`)
and metered like a step body's (`usage.py`: the step's, run's and function's totals, a token
budget). The key is never logged or stored: only the op's step record is kept.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import orjson

from .driver import CallError
from .step_record import StepRecord

if TYPE_CHECKING:
    from .opcodes import Opcodes
    from .queue import QueueItem
    from .state import CallState

ERROR_NAME = "AIGatewayError"
TIMEOUT_S = 600.0  # a model answer may take minutes; the lease is renewed meanwhile
_ERROR_TEXT = 500  # characters of a failed answer kept in the step's error


@dataclasses.dataclass
class ProviderRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    format: str


@dataclasses.dataclass
class ProviderAnswer:
    status: int | None  # None: no answer (connection error, timeout)
    data: Any
    message: str = ""
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def provider_request(op: dict[str, Any]) -> ProviderRequest:
    """The HTTP request an AIGateway op asks for; ValueError naming the field when the op
    cannot be acted on."""
    opts = op.get("opts") or {}
    url = opts.get("url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("AIGateway opts.url: must be an http(s) URL")
    if "body" not in opts:
        raise ValueError("AIGateway opts.body: required, the request for the model")
    headers = opts.get("headers") or {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError("AIGateway opts.headers: must be an object of strings")
    key = opts.get("auth_key") or ""
    if not isinstance(key, str):
        raise ValueError("AIGateway opts.auth_key: must be a string")
    fmt = str(opts.get("format") or "openai-chat")
    sent = {"Content-Type": "application/json"}
    if key:
        if fmt == "gemini":
            parts = urlsplit(url)
            query = f"{parts.query}&" if parts.query else ""
            url = urlunsplit(parts._replace(query=query + urlencode({"key": key})))
        elif fmt == "bedrock":
            sent["Authorization"] = key  # already a signed AWS authorization
        elif fmt == "anthropic":
            sent["x-api-key"] = key
        else:
            sent["Authorization"] = f"Bearer {key}"
    sent.update(headers)  # the op's own headers win
    return ProviderRequest(url, sent, orjson.dumps(opts["body"]), fmt)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_usage(answer: Any) -> dict[str, int] | None:
    """`{input_tokens, output_tokens}` from an Anthropic, OpenAI (chat or responses) or
    Gemini answer; None when it reports none."""
    if not isinstance(answer, dict):
        return None
    usage = answer.get("usage")
    if isinstance(usage, dict):
        tokens_in = _count(usage.get("input_tokens"))
        tokens_out = _count(usage.get("output_tokens"))
        if tokens_in is None and tokens_out is None:  # OpenAI chat completions
            tokens_in = _count(usage.get("prompt_tokens"))
            tokens_out = _count(usage.get("completion_tokens"))
    else:
        meta = answer.get("usageMetadata")  # Gemini
        if not isinstance(meta, dict):
            return None
        tokens_in = _count(meta.get("promptTokenCount"))
        tokens_out = _count(meta.get("candidatesTokenCount"))
    if tokens_in is None and tokens_out is None:
        return None
    return {"input_tokens": tokens_in or 0, "output_tokens": tokens_out or 0}


class AIGateway:
    """The HTTP client for model providers (one session per process)."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, request: ProviderRequest) -> ProviderAnswer:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(request.url, data=request.body,
                                          headers=request.headers) as response:
                raw = await response.read()
                retry_after = response.headers.get("retry-after")
                status = response.status
        except TimeoutError:
            return ProviderAnswer(None, None, "the model provider did not answer in time")
        except aiohttp.ClientError as exc:
            # the exception text may name the URL, whose query may hold a key: not shown
            return ProviderAnswer(None, None, f"the model provider could not be reached "
                                              f"({exc.__class__.__name__})")
        try:
            data: Any = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            data = raw.decode(errors="replace")
        message = "" if 200 <= status < 300 else (
            f"the model provider answered {status}: "
            f"{raw[:_ERROR_TEXT].decode(errors='replace')}")
        return ProviderAnswer(status, data, message, retry_after)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def infer(opcodes: Opcodes, item: QueueItem, token: str, op: dict[str, Any],
                started: int) -> tuple[QueueItem | None, CallState | None]:
    """Make the provider call of an AIGateway op and record it as the step's outcome."""
    request = provider_request(op)
    async with opcodes.renewing(item, token):
        answer = await opcodes.gateway.call(request)
    now = opcodes.clock()
    attempts = item.attempt + 1
    extra = {"format": request.format, "provider_status": answer.status}
    if answer.ok:
        usage = token_usage(answer.data)
        model = answer.data.get("model") if isinstance(answer.data, dict) else None
        record = StepRecord.of_op(op, "Completed", attempts, started, now, **extra,
                                  usage=usage, model=model if isinstance(model, str) else None)
        if usage:  # the cost meter and the budget count the tokens it used
            await opcodes.meter(item, token, op, model if isinstance(model, str) else None,
                                usage)
        memo = orjson.dumps({"data": answer.data})
        return await opcodes.next(item, token, now, op=op, memo=memo, record=record)
    error = {"name": ERROR_NAME, "message": answer.message, "stack": None}
    if attempts < item.max_attempts:
        failed = CallError(answer.message, error, True, answer.retry_after, answer.status)
        await opcodes.failed_attempt(item, token, failed, now, op)
        return None, None
    # retries spent: the error is the step's memo, raised in the function (like StepFailed)
    record = StepRecord.of_op(op, "Failed", attempts, started, now, **extra, error=error)
    return await opcodes.next(item, token, now, op=op, memo=orjson.dumps({"error": error}),
                              record=record)
