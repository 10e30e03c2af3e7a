"""The executor's HTTP endpoints for agent operations, mounted by `api.create_app`:

- `POST /v1/runs/{run_id}/heartbeat` (the SDK's `heartbeat()`): `{"call", "step", "name",
  "attempt", "usage"?}`; answers `{"alive": false}` when the call is no longer in flight.
  Under /v1, so production mode guards it like the rest of the API (Bearer signing key).
- `GET /v1/functions/{function_id}/usage`: totals, spend per day, per model, cost per run.
- `GET /metrics`: Prometheus text format. In production it needs the signing key (Bearer),
  a dashboard session, or its own token (`--metrics-token`): it guards itself, because the
  API's guard would send a scraper to the login page.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from inngest_like import wire

from . import api_schema, bodies, keys, retention, shards
from .auth import SESSION_COOKIE
from .heartbeats import call_id_ok
from .metrics import CONTENT_TYPE
from .usage import parse_report

_NUMBER = {"type": "number", "minimum": 0}
USAGE: dict[str, Any] = {"type": "object", "required": ["calls", "models"], "properties": {
    "calls": {"type": "integer", "minimum": 1},
    "models": {"type": "object", "additionalProperties": {"type": "object", "properties": {
        "input_tokens": {"type": "integer", "minimum": 0},
        "output_tokens": {"type": "integer", "minimum": 0}, "cost_usd": _NUMBER}}}}}
HEARTBEAT: dict[str, Any] = {"type": "object", "required": ["call"], "properties": {
    "call": api_schema.STRING, "step": api_schema.STRING, "name": api_schema.STRING,
    "attempt": {"type": "integer", "minimum": 0}, wire.USAGE_FIELD: USAGE}}


def _answer(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _answer({"error": message, "status": status}, status)


def mount(app: FastAPI, executor: Any) -> None:
    ops = executor.operations

    @app.post(wire.heartbeat_path("{run_id}"), openapi_extra=api_schema.body(HEARTBEAT))
    async def heartbeat(run_id: str, request: Request) -> Response:
        try:
            body = bodies.loads(await request.body())
        except bodies.BodyError as exc:
            return _error(400, str(exc))
        if not isinstance(body, dict):
            return _error(400, "body: must be a JSON object")
        call_id = body.get("call")
        if not call_id_ok(call_id, run_id):
            return _error(400, "call: must be the call id the executor sent with the call "
                               "(header X-Inngest-Like-Call)")
        now = executor.clock()
        alive = await ops.heartbeats.beat(call_id, now)
        report = parse_report(body.get(wire.USAGE_FIELD))
        if body.get(wire.USAGE_FIELD) is not None and report is None:
            return _error(400, "usage: must be {calls, models: {name: {input_tokens, "
                               "output_tokens, cost_usd}}} with non-negative numbers")
        if report is not None:
            fn_id = await executor.redis.hget(keys.run(run_id), "function_id")
            if fn_id is not None:
                attempt = body.get("attempt")
                recorded = await ops.usage.record(
                    run_id, fn_id.decode(), call_id, str(body.get("step") or ""),
                    str(body.get("name") or ""),
                    attempt + 1 if isinstance(attempt, int) and attempt >= 0 else 1,
                    report, now)
                if recorded is not None:
                    ops.metrics.usage(fn_id.decode(), recorded.delta)
        return _answer({"alive": alive, "status": 200})

    @app.get("/v1/functions/{function_id}/usage")
    async def function_usage(function_id: str) -> Response:
        await executor.registry.refresh()
        known = function_id in executor.registry.functions or await executor.redis.hexists(
            keys.FUNCTIONS_REMOVED, function_id) or any(await shards.each_shard(
                executor.redis, lambda pipe, shard: pipe.exists(  # one shard's keys a command
                    keys.function_usage(function_id, shard),
                    keys.runs_of_function(function_id, shard))))
        if not known:
            # neither synced nor known by what it left: unknown, or removed and expired
            period = retention.period_text(executor.settings.retention_ms)
            return _answer({"error": f"function {function_id} not found: no such function, "
                                     f"or it was removed more than the retention period "
                                     f"({period}) ago", "status": 404,
                            "function_id": function_id}, 404)
        return _answer({"data": await ops.usage.function_usage(function_id, executor.clock())})

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        auth = executor.auth
        if auth.production:
            header = request.headers.get("authorization") or ""
            token = executor.settings.metrics_token
            own = bool(token) and header.lower().startswith("bearer ") and hmac.compare_digest(
                header[7:].strip().encode(), token.encode())
            if not (own or auth.bearer_ok(header)
                    or await auth.session_ok(request.cookies.get(SESSION_COOKIE))):
                return _error(401, "send Authorization: Bearer <signing key or metrics token>")
        try:
            text = await ops.metrics.render(executor.redis, executor.clock())
        except LookupError as exc:
            return _error(404, str(exc))
        return Response(text, media_type=CONTENT_TYPE)

