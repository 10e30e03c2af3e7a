"""The HTTP driver: one POST to the app per queue item, and the answer parsed into an outcome.

Over inngest_like._http's kept-alive connections, not aiohttp (about 3x the CPU per call)
nor httpx (3x aiohttp's) on this hot path: bench/driver.py. The parsing never raises:
anything malformed becomes a CallError with a readable message, which fails that attempt
and never the executor.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import orjson

from inngest_like import _http
from inngest_like.wire import STEP_OPS, Opcode

from . import expressions

KNOWN_OPS = {op.value.lower() for op in Opcode}


@dataclasses.dataclass
class Completed:
    output: Any


@dataclasses.dataclass
class Ops:
    ops: list[dict[str, Any]]
    retry_after: str | None
    no_retry: bool
    version: int | None

    def ends(self) -> bool:
        """The function returned: the last op is RunComplete."""
        return bool(self.ops) and Opcode.parse(self.ops[-1].get("op")) is Opcode.RUN_COMPLETE

    def steps(self) -> list[dict[str, Any]]:
        """The ops but a last RunComplete (JS v4's and our SDK's last steps go with the
        function's end)."""
        return self.ops[:-1] if self.ends() else self.ops


@dataclasses.dataclass
class CallError:
    message: str
    error: dict[str, Any]
    retriable: bool = True
    retry_after: str | None = None
    status: int | None = None
    # the SDK's error body as sent (name, message, stack, code...): the run's output if this
    # error fails the run; `error` is the normalized form the end events carry
    body: dict[str, Any] | None = None


Outcome = Completed | Ops | CallError


def _error(message: str, status: int | None = None, **kw: Any) -> CallError:
    return CallError(message, {"name": "Error", "message": message, "error": message}, status=status, **kw)


_STEP_OPS = {op.value.lower() for op in STEP_OPS}  # ops that act on one step: must name it


def _op_problem(op: dict[str, Any]) -> str | None:
    """What is wrong with one opcode's shape, if anything (so the worker can trust it)."""
    step_id = op.get("id")
    if op["op"].lower() in _STEP_OPS and (not isinstance(step_id, str) or not step_id):
        return "'id' must be a non-empty string (the hashed step id)"
    if step_id is not None and not isinstance(step_id, str):
        return "'id' must be a string"
    for field in ("opts", "error"):
        if op.get(field) is not None and not isinstance(op[field], dict):
            return f"'{field}' must be an object"
    for field in ("displayName", "name"):
        if op.get(field) is not None and not isinstance(op[field], str):
            return f"'{field}' must be a string"
    return _pause_problem(op)


def _pause_problem(op: dict[str, Any]) -> str | None:
    """What a wait or an invoke lacks to become a pause (alone or in a parallel group)."""
    kind, opts = op["op"].lower(), op.get("opts") or {}
    if kind == "waitforevent" and not isinstance(opts.get("event") or op.get("name"), str):
        return "'opts.event' (or 'name') must be the name of the event to wait for"
    if kind == "invokefunction":
        if not isinstance(opts.get("function_id"), str) or not opts["function_id"]:
            return "'opts.function_id' must be the id of the function to invoke"
        payload = opts.get("payload")
        if payload is not None and not isinstance(payload, dict):
            return "'opts.payload' must be an object"
        if isinstance(payload, dict) and not isinstance(payload.get("data") or {}, dict):
            return "'opts.payload.data' must be an object"
    return None


def _expression_problem(op: dict[str, Any]) -> str | None:
    """A wait's `opts.if` is checked before it is stored: an expression that cannot be
    evaluated fails the run now, not every executor that later offers it an event."""
    if op["op"].lower() != "waitforevent":
        return None
    source = (op.get("opts") or {}).get("if")
    if source is None or source == "":
        return None
    if not isinstance(source, str):
        return "'opts.if' must be a string (a CEL expression)"
    try:
        expressions.validate(source)
    except expressions.ExpressionError as exc:
        return f"'opts.if': invalid CEL expression: {exc}"
    return None


def parse_response(status: int, headers: dict[str, str], body: bytes) -> Outcome:
    """Turn an SDK's answer into an outcome (protocol §5, §6). `headers` are lower-case."""
    if status == 201:  # streaming: keep-alive spaces, then an envelope with the real answer
        try:
            envelope = orjson.loads(body.strip())
            inner_body = envelope.get("body", "")
            body = inner_body.encode() if isinstance(inner_body, str) else orjson.dumps(inner_body)
            headers = {**headers, **{k.lower(): str(v) for k, v in (envelope.get("headers") or {}).items()}}
            status = int(envelope["status"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return _error("malformed streaming response from the SDK", status)
    from_sdk = "x-inngest-sdk" in headers
    no_retry_header = headers.get("x-inngest-no-retry")
    no_retry = no_retry_header == "true"
    retry_after = headers.get("retry-after")
    if 200 <= status < 300 and not from_sdk:
        return _error(f"HTTP {status} without an X-Inngest-SDK header: not an Inngest SDK", status)
    if status == 200:
        try:
            return Completed(orjson.loads(body) if body.strip() else None)
        except orjson.JSONDecodeError as exc:
            return _error(f"SDK answered 200 with a body that is not JSON: {exc}", status)
    if status == 206:
        try:
            parsed = orjson.loads(body) if body.strip() else []
        except orjson.JSONDecodeError as exc:
            return _error(f"SDK answered 206 with a body that is not JSON: {exc}", status)
        ops = [parsed] if isinstance(parsed, dict) else parsed
        if not isinstance(ops, list):
            return _error("SDK answered 206 with neither an opcode list nor an opcode", status)
        for i, op in enumerate(ops):
            if not isinstance(op, dict) or not isinstance(op.get("op"), str):
                return _error(f"opcode {i}: must be an object with a string 'op'", status)
            if op["op"].lower() not in KNOWN_OPS:
                return _error(f"opcode {i}: unknown op {op['op']!r}", status)
            problem = _op_problem(op)
            if problem:
                return _error(f"opcode {i} ({op['op']}): {problem}", status)
            problem = _expression_problem(op)
            if problem:  # the same answer would come back on a retry
                return _error(f"opcode {i} ({op['op']}): {problem}", status, retriable=False)
        version_text = headers.get("x-inngest-req-version", "").strip()
        try:
            version: int | None = int(version_text) if version_text else None
        except ValueError:
            version = None
        return Ops(ops, retry_after, no_retry, version)
    # an error answer: take the SDK's error object when there is one
    try:
        parsed_error = orjson.loads(body) if body.strip() else None
    except orjson.JSONDecodeError:
        parsed_error = None
    if from_sdk and isinstance(parsed_error, dict) and parsed_error.get("message") is not None:
        message = str(parsed_error.get("message"))
        error = {
            "error": f"invalid status code: {status}",
            "name": str(parsed_error.get("name") or "Error"),
            "message": message,
            "stack": str(parsed_error.get("stack") or ""),
        }
    else:
        text = body[:500].decode(errors="replace")
        message = f"invalid status code: {status}" + (f": {text}" if text.strip() else "")
        error = {"error": f"invalid status code: {status}", "name": "Error", "message": message}
    retriable = not no_retry if no_retry_header is not None else True
    body_as_sent = parsed_error if from_sdk and isinstance(parsed_error, dict) else None
    return CallError(message, error, retriable, retry_after, status, body_as_sent)


MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # Inngest's limit on an SDK's answer
CONNECT_TIMEOUT_S = 10.0


class Driver:
    """Calls apps. Redirects are never followed (a 307 would re-POST the signed run state
    wherever it points), connecting has its own short timeout (an unreachable app fails
    fast while a step may run for hours), and an answer over `max_response_bytes` fails the
    run instead of filling the executor's memory."""

    def __init__(self, timeout_s: float = 600.0, *,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_response_bytes = max_response_bytes
        self._http: _http.Client | None = None

    def _client(self) -> _http.Client:
        if self._http is None or self._http.closed:
            self._http = _http.Client(connect_timeout_s=self.connect_timeout_s,
                                      max_body_bytes=self.max_response_bytes)
        return self._http

    async def call(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        try:
            response = await self._client().post(url, body, headers, self.timeout_s)
        except _http.TooLarge:
            return _error(f"the app's answer is larger than {self.max_response_bytes} "
                          "bytes, the limit (--max-response-bytes)", retriable=False)
        except _http.ConnectError as exc:
            return _error(f"{exc} (calling {url})")
        except TimeoutError:
            return _error(f"the call to {url} timed out")
        except (_http.HTTPError, OSError, ValueError) as exc:
            return _error(f"the call to {url} failed: {exc.__class__.__name__}: {exc}")
        if 300 <= response.status < 400:
            target = response.headers.get("location", "(no Location)")
            return _error(f"the app answered {response.status} with a redirect to "
                          f"{target}; redirects are not followed: register the "
                          "function at its final URL", response.status)
        return parse_response(response.status, response.headers, response.body)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


class AppDriver(Protocol):
    """What the worker needs of a driver: one call to the app, its answer as an outcome.
    `Driver` in production; tests inject a fake that answers from a script."""

    async def call(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome: ...
