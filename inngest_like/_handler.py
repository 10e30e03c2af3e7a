"""The framework-neutral side of `serve()`: sync (PUT), introspection (GET), calls (POST).

Framework adapters (`fast_api.py`) translate their request into `Request` and the returned
`Response` back; everything protocol-shaped lives here.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import os
import urllib.parse
from typing import Any

import httpx
import orjson

from . import wire
from ._checkpoint import Checkpointer
from ._client import Inngest
from ._context import Context, Group
from ._engine import Dispatch, error_body, hash_step_id, to_json
from ._errors import ConfigError, NonRetriableError, RetryAfterError, StepError, _Interrupt
from ._event import Event
from ._function import Function
from ._scope import CALL_HEADER, call_scope
from ._step import Step, StepSync
from ._tracing import continued
from ._version import SDK_HEADER, VERSION
from .signing import SignatureError, sign, verify
from .wire import Opcode

FRAMEWORK = "fast_api"


@dataclasses.dataclass
class Request:
    method: str
    url: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclasses.dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def encoded(self) -> bytes:
        return orjson.dumps(self.body)


FEATURES_HEADER = wire.FEATURES_HEADER.lower()  # the handler's headers are lower case
RUN_COMPLETE_ID = hash_step_id("complete", 0)  # the id JS v4 gives its RunComplete op
MAX_JSON_DEPTH = 100  # as the executor's: deeper values cannot be written back (orjson: 254)


def _too_deep(value: Any, raw: bytes) -> bool:
    """Nested deeper than MAX_JSON_DEPTH? A body with no more `[` and `{` than that cannot
    be (counted at memchr speed: most calls stop here). Else measured by orjson's own write
    limit (254): the value is wrapped so that exactly the too-deep ones pass it."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False
    wrapped = value
    for _ in range(254 - MAX_JSON_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except TypeError:
        return True
    return False


def _call_fields(payload: Any, raw: bytes) -> tuple[dict[str, Any], list[Any], dict[str, Any]]:
    """A call request's `ctx`, `events` and `steps` (parsed from `raw`); ValueError names a
    wrong field."""
    if not isinstance(payload, dict):
        raise ValueError("body: must be a JSON object")
    if _too_deep(payload, raw):
        raise ValueError(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    ctx = payload.get("ctx") or {}
    if not isinstance(ctx, dict):
        raise ValueError("ctx: must be an object")
    events = payload.get("events") or []
    if not isinstance(events, list):
        raise ValueError("events: must be a list of events")
    steps = payload.get("steps") or {}
    if not isinstance(steps, dict):
        raise ValueError("steps: must be an object of memos by hashed step id")
    return ctx, events, steps


def _error(status: int, code: str, message: str, **headers: str) -> Response:
    return Response(status, {"code": code, "message": message, "name": "Error"}, dict(headers))


class Handler:
    def __init__(
        self,
        client: Inngest,
        functions: list[Function],
        *,
        serve_origin: str | None = None,
        serve_path: str | None = None,
    ) -> None:
        self.client = client
        self.functions: dict[str, Function] = {}
        for fn in functions:
            for served in (fn, fn.on_failure):
                if served is None:
                    continue
                if served.id in self.functions:
                    raise ValueError(f"serve(): two functions share the id {served.id!r}")
                self.functions[served.id] = served
        self.user_function_count = len(functions)
        if client.is_production and not client.signing_key:
            raise ConfigError(
                "serve(): production mode needs a signing key: pass signing_key= to Inngest() "
                "or set INNGEST_SIGNING_KEY (or use dev mode with INNGEST_DEV=1)"
            )
        self.serve_origin = serve_origin or os.environ.get("INNGEST_SERVE_ORIGIN")
        self.serve_path = serve_path or os.environ.get("INNGEST_SERVE_PATH")
        self.allow_in_band_sync = os.environ.get(
            "INNGEST_ALLOW_IN_BAND_SYNC", "").strip().lower() not in ("false", "0")

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-Inngest-SDK": SDK_HEADER,
            "X-Inngest-Req-Version": "2",
            "X-Inngest-Framework": FRAMEWORK,
        }
        headers.update(extra or {})
        return headers

    def _mode(self) -> str:
        return "cloud" if self.client.is_production else "dev"

    def _serve_url(self, request_url: str) -> str:
        parts = urllib.parse.urlsplit(request_url)
        origin = self.serve_origin or f"{parts.scheme}://{parts.netloc}"
        path = self.serve_path or parts.path
        return origin.rstrip("/") + path

    def _keys(self) -> list[str]:
        return [k for k in (self.client.signing_key, self.client.signing_key_fallback) if k]

    def _signed_by(self, request: Request) -> str | None:
        """Production: the key that signed this request (to sign the answer with), if one
        did. Dev mode never considers a request signed, as the official SDKs."""
        if not self.client.is_production:
            return None
        header = request.headers.get("x-inngest-signature")
        for key in self._keys():
            try:
                verify(request.body, header, [key])
            except SignatureError:
                continue
            return key
        return None

    def _unverified(self, request: Request) -> Response | None:
        """In production every POST must carry a valid signature: None if it does, else
        the 401 answer. Dev mode does not check (as the official SDKs)."""
        if not self.client.is_production:
            return None
        try:
            verify(request.body, request.headers.get("x-inngest-signature"), self._keys())
        except SignatureError as exc:
            return _error(401, exc.code, exc.message)
        return None

    # -- GET ----------------------------------------------------------------------------
    def inspect(self, request: Request) -> Response:
        kind = request.headers.get("x-inngest-server-kind")
        if kind and kind != self._mode():
            return Response(403, {}, self._headers())
        return Response(
            200,
            {
                "function_count": self.user_function_count,
                "has_event_key": bool(self.client.event_key),
                "has_signing_key": bool(self.client.signing_key),
                "has_signing_key_fallback": bool(self.client.signing_key_fallback),
                "mode": self._mode(),
                "schema_version": "2024-05-24",
            },
            self._headers(),
        )

    # -- PUT: out-of-band sync -------------------------------------------------------------
    def registration(self, serve_url: str) -> dict[str, Any]:
        return {
            "appname": self.client.app_id,
            "deploy_type": "ping",
            "url": serve_url,
            "sdk": f"py:v{VERSION}",
            "v": "0.1",
            "framework": FRAMEWORK,
            "functions": [fn.to_config(serve_url) for fn in self.functions.values()],
            "capabilities": {"in_band_sync": "v1", "trust_probe": "v1"},
        }

    async def sync(self, request: Request) -> Response:
        kind = request.headers.get("x-inngest-server-kind")
        if kind and kind != self._mode():
            return _error(400, "server_kind_mismatch", f"Sync rejected: server is {kind}")
        signed_by = self._signed_by(request)
        if request.headers.get("x-inngest-sync-kind") == "in_band" and self.allow_in_band_sync:
            if signed_by is None:
                return _error(401, "sig_verification_failed",
                              "an in-band sync must be signed with this app's signing key")
            return self._in_band(request, signed_by)
        serve_url = self._sync_url(request, signed_by)
        if isinstance(serve_url, Response):
            return serve_url
        url = urllib.parse.urljoin(self.client.api_origin, "/fn/register")
        if deploy_id := request.query.get("deployId"):
            url += f"?deployId={urllib.parse.quote(deploy_id)}"
        headers = {"Content-Type": "application/json", "X-Inngest-SDK": SDK_HEADER}
        if kind:
            headers["X-Inngest-Expected-Server-Kind"] = kind
        try:
            answer = await self.client.api_request(
                "POST", url, content=orjson.dumps(self.registration(serve_url)), headers=headers)
            body = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            return _error(500, "registration_failed", f"could not reach {url}: {exc}")
        status = 200 if answer.status_code < 400 else answer.status_code
        return Response(status, body, self._headers({"X-Inngest-Sync-Kind": "out_of_band"}))

    def _sync_url(self, request: Request, signed_by: str | None) -> str | Response:
        """Where this app is served, for an out-of-band sync. In production never from the
        `Host` header (anybody can send a PUT with a forged one): from `serve_origin` /
        INNGEST_SERVE_ORIGIN, or from the body of a sync the executor signed."""
        if not self.client.is_production or self.serve_origin:
            return self._serve_url(request.url.split("?")[0])
        if signed_by is not None:
            try:
                signed_url = orjson.loads(request.body).get("url")
            except (orjson.JSONDecodeError, AttributeError):
                signed_url = None
            if isinstance(signed_url, str) and signed_url.startswith(("http://", "https://")):
                return self._serve_url(signed_url)
        return _error(400, "serve_origin_required",
                      "in production the serve URL comes from serve_origin= or "
                      "INNGEST_SERVE_ORIGIN, or from a signed sync; never from the Host header")

    def _in_band(self, request: Request, signed_by: str) -> Response:
        """In-band sync (protocol §3.3): answer the signed PUT with the registration itself,
        signed with the same key, instead of calling `/fn/register`."""
        try:
            url = orjson.loads(request.body)["url"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            url = None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _error(400, "malformed_request", "url: an in-band sync body needs the "
                          "http(s) URL the server reached this app at")
        serve_url = self._serve_url(url)
        body = {
            "app_id": self.client.app_id,
            "framework": FRAMEWORK,
            "functions": [fn.to_config(serve_url) for fn in self.functions.values()],
            "inspection": {**self.inspect(request).body, "authentication_succeeded": True,
                           "app_id": self.client.app_id, "sdk_language": "py",
                           "sdk_version": VERSION, "serve_origin": self.serve_origin,
                           "serve_path": self.serve_path},
            "sdk_author": "inngest_like",
            "sdk_language": "py",
            "sdk_version": VERSION,
            "sdk": f"py:v{VERSION}",
            "url": serve_url,
            "capabilities": {"in_band_sync": "v1", "trust_probe": "v1"},
        }
        signature = sign(orjson.dumps(body), signed_by)  # over the bytes sent, as the SDKs do
        return Response(200, body, self._headers({"X-Inngest-Sync-Kind": "in_band",
                                                  "X-Inngest-Signature": signature}))

    # -- POST: one call request ---------------------------------------------------------
    async def _fetch_state(self, run_id: str) -> tuple[list[Any], dict[str, Any]]:
        """`use_api`: the payload was too large to send, so fetch events and memos."""
        base = self.client.api_origin
        batch = await self.client.api_request(
            "GET", urllib.parse.urljoin(base, f"/v0/runs/{run_id}/batch"))
        actions = await self.client.api_request(
            "GET", urllib.parse.urljoin(base, f"/v0/runs/{run_id}/actions"))
        batch.raise_for_status()
        actions.raise_for_status()
        return list(batch.json()), dict(actions.json())

    async def call(self, request: Request) -> Response:
        refused = self._unverified(request)
        if refused is not None:
            return refused
        if request.query.get("probe") == "trust":
            return Response(200, None, self._headers())
        fn = self.functions.get(request.query.get("fnId", ""))
        if fn is None:
            return _error(
                500,
                "function_not_found",
                f"no function {request.query.get('fnId')!r} is served here",
                **{"X-Inngest-No-Retry": "true"},
            )
        try:
            payload = orjson.loads(request.body)
            ctx_in, events_raw, steps = _call_fields(payload, request.body)
            if payload.get("use_api") or ctx_in.get("use_api"):
                events_raw, steps = await self._fetch_state(str(ctx_in["run_id"]))
            event = Event.model_validate(payload.get("event") or events_raw[0])
            events = [Event.model_validate(e) for e in events_raw] or [event]
            run_id = str(ctx_in.get("run_id", ""))
            attempt = int(ctx_in.get("attempt", 0))
        except Exception as exc:
            return _error(400, "malformed_request", f"cannot read the call request: {exc}")

        dispatch = Dispatch(
            memos=steps,
            target_step=request.query.get("stepId", "step"),
            attempt=attempt,
            max_attempts=ctx_in.get("max_attempts"),
            disable_immediate_execution=bool(ctx_in.get("disable_immediate_execution")),
            run_id=run_id,
            enforces_limits=CALL_HEADER in request.headers,  # inngest_like's executor
        )
        step: Step | StepSync
        checkpoint: Checkpointer | None = None
        if fn.is_async:
            # a function-wide step timeout bounds each call, so each call runs one step
            # what an executor of ours takes (Inngest's takes RunComplete after steps)
            features = request.headers.get(FEATURES_HEADER, "").split(",")
            checkpoint = (Checkpointer(self.client, self.client.checkpoint_sessions, ctx_in,
                                       request.headers.get("x-inngest-generation-id", ""),
                                       request.headers.get("traceparent"),
                                       self.client.checkpoint_batches.get(self.client)
                                       if wire.BATCHED_CHECKPOINTS in features else None,
                                       fold=CALL_HEADER not in request.headers
                                       or wire.RUN_COMPLETE_WITH_STEPS in features)
                          if self.client.checkpointing and ctx_in.get("fn_id") and run_id
                          and fn.agent.step_timeout is None else None)
            step = Step(dispatch, self.client.send, checkpoint)
        else:
            step = StepSync(dispatch, self.client.send_sync)
        ctx = Context(
            event=event,
            events=events,
            run_id=run_id,
            attempt=attempt,
            step=step,
            group=Group(step),
            logger=self.client.logger,
            fn_id=fn.id,
        )
        args = (ctx, step) if fn.takes_step else (ctx,)
        try:
            # heartbeats and usage know their call; user spans nest under the step's span
            with call_scope(run_id, attempt, request.headers.get(CALL_HEADER), self.client), \
                    continued(request.headers):
                response = await self._outcome(fn, args)
                if checkpoint is not None and checkpoint.held is not None:
                    response = await self._with_held(response, checkpoint)
                return response
        finally:
            for task in dispatch.parked:
                task.cancel()

    async def _outcome(self, fn: Function, args: tuple[Any, ...]) -> Response:
        try:
            if fn.is_async:
                output = await fn.handler(*args)
            else:
                loop = asyncio.get_running_loop()
                # the thread sees the call's context (its scope, the trace)
                run = contextvars.copy_context().run
                output = await loop.run_in_executor(None, functools.partial(run, fn.handler, *args))
        except _Interrupt as interrupt:
            extra = {"Retry-After": interrupt.retry_after} if interrupt.retry_after else {}
            try:
                orjson.dumps(interrupt.ops)  # a step's output nested too deep to be written
            except TypeError as exc:
                return Response(500, {"code": "unserializable_output", "message": str(exc),
                                      "name": type(exc).__name__},
                                self._headers({"X-Inngest-No-Retry": "true"}))
            return Response(206, interrupt.ops, self._headers(extra))
        except (NonRetriableError, StepError) as exc:
            # A failed step re-raised by user code fails the run: retrying replays the memo.
            return Response(500, self._error_body(exc), self._headers({"X-Inngest-No-Retry": "true"}))
        except RetryAfterError as exc:
            return Response(
                500, self._error_body(exc), self._headers({"Retry-After": exc.retry_after_header()})
            )
        except Exception as exc:
            return Response(500, self._error_body(exc), self._headers())
        try:
            body = to_json(output)
            orjson.dumps(body)
        except Exception as exc:
            return Response(
                500,
                {"code": "unserializable_output", "message": str(exc), "name": type(exc).__name__},
                self._headers({"X-Inngest-No-Retry": "true"}),
            )
        return Response(200, body, self._headers())

    async def _with_held(self, response: Response, checkpoint: Checkpointer) -> Response:
        """The call's answer while a step that ran is still held (_checkpoint.py): when the
        function returned, the step goes with its end; otherwise it is saved first, or, when
        that fails, answered alone (the next call replays to where this one stopped)."""
        if response.status == 200:
            held = await checkpoint.at_end()
            if held is None:  # saved already
                return response
            if not checkpoint.fold:  # not saved, and this executor takes it alone only
                return Response(206, [held], self._headers())
            return Response(206, [held, {"op": Opcode.RUN_COMPLETE.value,
                                         "id": RUN_COMPLETE_ID, "data": response.body}],
                            response.headers)
        unsaved = await checkpoint.flush()
        return response if unsaved is None else Response(206, [unsaved], self._headers())

    @staticmethod
    def _error_body(exc: BaseException) -> dict[str, Any]:
        code = "step_errored" if isinstance(exc, StepError) else "unknown"
        return {"code": code, **error_body(exc)}
