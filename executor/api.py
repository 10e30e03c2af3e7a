"""The executor's HTTP API: events in, sync, and the /v0 + /v1 read API. Errors are JSON
`{"error": "...", "status": N}`."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import api_ops, api_schema, bodies, control, gql, ops_routes, retention
from . import events as event_in
from .auth import SESSION_COOKIE
from .ingest import NotReplicated
from .registry import SyncError
from .request_guard import RequestGuard
from .service import Executor
from .state import Checkpointed
from .step_record import StepRecord, step_times


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


log = logging.getLogger("inngest_like.executor")

OPEN_PATHS = {"/health", "/login", "/logout", "/metrics"}  # /metrics guards itself


def _error(status: int, message: str, **extra: Any) -> ORJSONResponse:
    return ORJSONResponse({"error": message, "status": status, **extra}, status_code=status)


def not_found(kind: str, id_field: str, found_id: str, retention_ms: int) -> ORJSONResponse:
    """404 for a run or event id that is unknown, or was deleted by retention (the two are
    told apart by nothing: a deleted id leaves no trace)."""
    return _error(404, f"{kind} {found_id} not found: no such {kind}, or it is older than "
                       f"the retention period ({retention.period_text(retention_ms)}) and was deleted",
                  **{id_field: found_id})


class ProductionAccess:
    """Production mode: the API needs the signing key (Bearer) or a dashboard session, the
    dashboard a session. Dev mode is open, like Inngest's dev server.

    Plain ASGI: Starlette's `@app.middleware("http")` would run every request's route in a
    task of its own and stream its answer through a memory channel, on every checkpoint
    and every event (bench/hotpath.py measured it as the executor's largest cost after
    its own code)."""

    def __init__(self, app: ASGIApp, executor: Executor) -> None:
        self.app = app
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.executor.auth.production:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in OPEN_PATHS or path.startswith("/e/"):
            await self.app(scope, receive, send)
            return
        refusal = await self._refusal(Request(scope), path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _refusal(self, request: Request, path: str) -> Response | None:
        auth = self.executor.auth
        bearer = auth.bearer_ok(request.headers.get("authorization"))
        if path.startswith(("/fn/", "/v0/")) and path != gql.PATH:  # GraphQL: like /v1
            if not bearer:
                return _error(401, "a valid Authorization: Bearer <signing key> is required")
            return None
        if bearer or await auth.session_ok(request.cookies.get(SESSION_COOKIE)):
            return None
        if path.startswith("/v1/") or path == gql.PATH:
            return _error(401, "log in, or send Authorization: Bearer <signing key>")
        return RedirectResponse(f"/login?next={quote(path)}", status_code=303)


# what a storage failure raises: the cluster client's own errors are not RedisErrors
STORAGE_ERRORS = (RedisError, RedisClusterException)


def _storage_error(exc: Exception) -> ORJSONResponse:
    # Nothing was acknowledged, so nothing is lost: the sender retries on a 5xx.
    if isinstance(exc, ResponseError):  # a script or command refused: ours to fix
        log.error("Redis refused a command: %s", exc)
        return _error(500, "internal error: a storage command failed; see the executor log")
    return _error(503, f"storage unavailable: {exc.__class__.__name__}; retry later")


async def events_answer(executor: Executor, event_key: str, body: bytes,
                        id_seed: str | None) -> Response:
    """POST /e/{event_key}: store the events and start their runs."""
    if not await executor.auth.event_key_ok(event_key):
        return _error(401, "unknown event key", ids=[])
    now = executor.clock()
    try:
        incoming, problem = event_in.parse_batch(body, executor.settings.limits, now, id_seed)
    except event_in.EventError as exc:
        return _error(400, str(exc), ids=[])
    if incoming:  # a batch's valid events before its first invalid one are accepted
        try:
            await executor.ingest.accept(incoming, replicas=executor.settings.ack_replicas)
        except NotReplicated as exc:
            return _error(503, str(exc), ids=[e.internal_id for e in incoming])
    # (after accept: a repeated sender id answers the id stored the first time)
    ids = [e.internal_id for e in incoming]
    if problem is not None:
        return _error(400, str(problem), ids=ids)
    return ORJSONResponse({"ids": ids, "status": 200})


MAX_BATCHED_CHECKPOINTS = 512  # checkpoints in one POST /v1/checkpoints


def _checkpoint_steps(body: Any, now: int) -> list[tuple[str, bytes, StepRecord]] | str:
    """The (hashed id, memo, record) of each StepRun a checkpoint body carries, or what is
    wrong with it (field and problem)."""
    steps = body.get("steps") if isinstance(body, dict) else None
    if not isinstance(steps, list):
        return "steps: must be a list of StepRun opcodes"
    requested = body.get("request_started_at")
    since = requested if type(requested) is int and requested <= now else now  # the call's start
    saved = []
    for i, op in enumerate(steps):
        if not isinstance(op, dict) or not isinstance(op.get("id"), str) or not op["id"]:
            return f"steps[{i}]: must be an opcode object with a string id"
        if str(op.get("op", "")).lower() not in ("steprun", "step"):
            return f"steps[{i}].op: only StepRun can be checkpointed"
        record = StepRecord.of_op(op, "Completed", 1, *step_times(op, since, now),
                                  checkpointed=True)
        saved.append((op["id"], orjson.dumps({"data": op.get("data")}), record))
    return saved


async def _checkpointed(executor: Executor, run_id: str, body: dict[str, Any],
                        traceparent: str | None, now: int, result: Checkpointed
                        ) -> tuple[int, str | None]:
    """After checkpoint.lua: (HTTP status, error message) of one checkpoint."""
    if result.code == -2:
        return 409, ("generation_id: this call no longer holds its lease; answer the call "
                     "instead (its outcome will be dropped)")
    if result.code < 0:
        return 404, f"run {run_id} is not running"
    # usage, budget, progress and spans of the steps (agent operations)
    stop = await executor.operations.checkpointed(run_id, body, body["steps"], traceparent,
                                                  now, result)
    if stop is not None:  # saved, but the run spent its budget: answer the call now
        return 409, str(stop["message"])
    return 200, None


async def checkpoint_answer(executor: Executor, run_id: str, raw: bytes,
                            traceparent: str | None) -> Response:
    """POST /v1/checkpoint/{run_id}/async: save the steps an SDK ran inside one call."""
    try:
        body = bodies.loads(raw)
    except bodies.BodyError as exc:
        return _error(400, str(exc))
    now = executor.clock()
    saved = _checkpoint_steps(body, now)
    if isinstance(saved, str):
        return _error(400, saved)
    result = await executor.state.checkpoint(
        run_id, now, saved, item_id=str(body.get("qi_id") or ""),
        generation=str(body.get("generation_id") or ""))
    status, message = await _checkpointed(executor, run_id, body, traceparent, now, result)
    return _error(status, message) if message else ORJSONResponse({"status": 200})


async def checkpoints_answer(executor: Executor, raw: bytes) -> Response:
    """POST /v1/checkpoints (ours): the checkpoints of several calls in one request, saved
    in one pipeline. Our SDK sends its calls' checkpoints together while an earlier batch
    is on its way (group commit): under load, a step costs a fraction of a request. Each
    entry is a body of /v1/checkpoint/{run_id}/async plus its call's `traceparent`; the
    answer gives each its status, as that route would have."""
    try:
        body = bodies.loads(raw)
    except bodies.BodyError as exc:
        return _error(400, str(exc))
    entries = body.get("checkpoints") if isinstance(body, dict) else None
    if not isinstance(entries, list) or not entries:
        return _error(400, "checkpoints: must be a non-empty list of checkpoint bodies")
    if len(entries) > MAX_BATCHED_CHECKPOINTS:
        return _error(400, f"checkpoints: at most {MAX_BATCHED_CHECKPOINTS} per request")
    now = executor.clock()
    results: list[dict[str, Any]] = [{}] * len(entries)
    todo: list[tuple[int, str, list[tuple[str, bytes, StepRecord]], str, str]] = []
    for i, entry in enumerate(entries):
        run_id = entry.get("run_id") if isinstance(entry, dict) else None
        if not isinstance(run_id, str) or not run_id:
            results[i] = {"status": 400, "message": f"checkpoints[{i}].run_id: must be a run id"}
            continue
        saved = _checkpoint_steps(entry, now)
        if isinstance(saved, str):
            results[i] = {"status": 400, "message": f"checkpoints[{i}].{saved}"}
            continue
        todo.append((i, run_id, saved, str(entry.get("qi_id") or ""),
                     str(entry.get("generation_id") or "")))
    answers = await executor.state.checkpoint_many(
        [(run_id, saved, item_id, generation) for _, run_id, saved, item_id, generation
         in todo], now)
    for (i, run_id, _, _, _), result in zip(todo, answers, strict=True):
        entry = entries[i]
        traceparent = entry.get("traceparent")
        status, message = await _checkpointed(
            executor, run_id, entry, traceparent if isinstance(traceparent, str) else None,
            now, result)
        results[i] = {"status": status, "message": message} if message else {"status": 200}
    return ORJSONResponse({"results": results})


class HotRoutes:
    """The routes on every run's path, events in and checkpoints, served as plain ASGI
    ahead of the router: FastAPI's route machinery (exception middlewares, a scan of every
    route, dependency solving, an exit stack) cost as much as the checkpoint's own work
    (bench/hotpath.py). Inside the request guard and production access, like any route;
    the FastAPI routes of the same paths stay for the OpenAPI document."""

    def __init__(self, app: ASGIApp, executor: Executor) -> None:
        self.app = app
        self.executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        run_id = event_key = ""
        batch = path == CHECKPOINTS_PATH
        if path.startswith(CHECKPOINT_PREFIX) and path.endswith(CHECKPOINT_SUFFIX):
            run_id = path[len(CHECKPOINT_PREFIX):-len(CHECKPOINT_SUFFIX)]
        elif path.startswith("/e/"):
            event_key = path[3:]
        if not batch and ("/" in run_id + event_key or not run_id + event_key):  # not ours
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client left mid-body: nobody to answer, nothing to act on
        headers = Headers(scope=scope)
        try:
            if batch:
                response = await checkpoints_answer(self.executor, body)
            elif run_id:
                response = await checkpoint_answer(self.executor, run_id, body,
                                                   headers.get("traceparent"))
            else:
                response = await events_answer(self.executor, event_key, body,
                                               headers.get("x-inngest-event-id-seed"))
        except STORAGE_ERRORS as exc:
            response = _storage_error(exc)
        except Exception:  # answered as JSON like every error here, not Starlette's text
            log.exception("%s failed", path)
            response = _error(500, "internal error: see the executor log; nothing was "
                                   "acknowledged, so sending again is safe")
        await response(scope, receive, send)


CHECKPOINT_PREFIX, CHECKPOINT_SUFFIX = "/v1/checkpoint/", "/async"
CHECKPOINTS_PATH = "/v1/checkpoints"


async def _read_body(receive: Receive) -> bytes | None:
    """The request's whole body; None when the client disconnected before it all came."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _no_native_telemetry() -> dict[str, Any]:
    """FastAPI's own OpenTelemetry instrumentation off, where it has one (0.16x): it looks up
    the global tracer and meter providers (reading os.environ) on every request, a few
    percent of the executor's CPU per call, for spans the executor makes itself
    (tracing.py) where they mean something: per run and per step."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(executor: Executor, *, manage_lifecycle: bool = True) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await executor.start()
        try:
            yield
        finally:
            if manage_lifecycle:
                await executor.stop()

    app = ExecutorApp(title="inngest_like executor", lifespan=lifespan,
                      **_no_native_telemetry())
    app.state.executor = executor

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(RedisError)
    @app.exception_handler(RedisClusterException)
    async def storage_error(request: Request, exc: Exception) -> Response:
        return _storage_error(exc)

    @app.get("/health")
    async def health() -> Response:
        await executor.redis.ping()
        return ORJSONResponse({"status": 200, "message": "OK", "mode": executor.settings.mode,
                              "calls_made": executor.worker.calls_made})

    @app.post("/e/{event_key}", openapi_extra=api_schema.body(api_schema.EVENTS))
    async def send_events(event_key: str, request: Request) -> Response:
        # served by HotRoutes below; this route documents it (and answers if mounted alone)
        return await events_answer(executor, event_key, await request.body(),
                                   request.headers.get("x-inngest-event-id-seed"))

    @app.post("/fn/register", openapi_extra=api_schema.body(api_schema.REGISTRATION))
    async def register(request: Request) -> Response:
        raw = await request.body()
        try:
            body = bodies.loads(raw)
        except bodies.BodyError as exc:
            return _error(400, str(exc))
        expected = request.headers.get("x-inngest-expected-server-kind")
        if expected and expected != executor.settings.mode:
            return _error(400, f"Expected server kind {expected}, got {executor.settings.mode}")
        try:
            result = await executor.registry.sync(body, raw, executor.clock())
        except SyncError as exc:
            return _error(exc.status, str(exc))
        return ORJSONResponse(result)

    @app.get("/v1/events")
    async def list_events(name: str | None = None, limit: int = 20) -> Response:
        if not 1 <= limit <= 1000:
            return _error(400, "limit: must be between 1 and 1000")
        return ORJSONResponse({"data": await executor.read.events(name, limit)})

    @app.get("/v1/events/{event_id}")
    async def get_event(event_id: str) -> Response:
        found = await executor.read.event(event_id)
        if found is None:
            return not_found("event", "event_id", event_id, executor.settings.retention_ms)
        return ORJSONResponse({"data": found})

    @app.get("/v1/events/{event_id}/runs")
    async def event_runs(event_id: str) -> Response:
        if not await executor.read.event_exists(event_id):
            return not_found("event", "event_id", event_id, executor.settings.retention_ms)
        return ORJSONResponse({"data": await executor.read.event_runs(event_id)})

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: str) -> Response:
        found = await executor.read.run(run_id)
        if found is None:
            return not_found("run", "run_id", run_id, executor.settings.retention_ms)
        return ORJSONResponse({"data": found})

    @app.delete("/v1/runs/{run_id}")
    async def cancel_run(run_id: str, reason: str | None = None) -> Response:
        found = await executor.read.run(run_id)
        if found is None:
            return not_found("run", "run_id", run_id, executor.settings.retention_ms)
        if found["status"] != "Running":
            return _error(409, f"run {run_id} is {found['status']}, not running")
        why = " ".join((reason or "").split())[:500]
        await executor.ingest.cancel(run_id, "cancelled through the API"
                                     + (f": {why}" if why else ""))
        return ORJSONResponse({"data": await executor.read.run(run_id)})

    @app.post("/v1/runs/{run_id}/rerun")
    async def rerun(run_id: str, from_step: str | None = None) -> Response:
        try:
            new_id = await control.rerun(executor, run_id, from_step)
        except control.RerunError as exc:
            if exc.status == 404:
                return not_found("run", "run_id", run_id, executor.settings.retention_ms)
            return _error(exc.status, str(exc))
        return ORJSONResponse({"data": await executor.read.run(new_id)})

    @app.post("/v1/cancellations", openapi_extra=api_schema.body(api_schema.CANCELLATION))
    async def cancellations(request: Request) -> Response:
        try:
            spec = control.parse_cancellation(bodies.loads(await request.body()))
        except ValueError as exc:  # BodyError included
            return _error(400, str(exc))
        return ORJSONResponse({"data": await control.cancel_many(executor, spec)})

    @app.get("/v1/runs/{run_id}/steps")
    async def get_steps(run_id: str) -> Response:
        found = await executor.read.steps(run_id)
        if found is None:
            return not_found("run", "run_id", run_id, executor.settings.retention_ms)
        run = await executor.read.run(run_id)
        # why the run's next step is not running yet (flow control), beside its steps
        return ORJSONResponse({"data": found,
                               "waiting_reason": run["waiting_reason"] if run else None})

    @app.post("/v1/checkpoint/{run_id}/async",
              openapi_extra=api_schema.body(api_schema.CHECKPOINT))
    async def checkpoint(run_id: str, request: Request) -> Response:
        """JS v4 SDKs save steps here while one request runs several of them."""
        # served by HotRoutes below; this route documents it (and answers if mounted alone)
        return await checkpoint_answer(executor, run_id, await request.body(),
                                       request.headers.get("traceparent"))

    @app.post("/v1/checkpoints", openapi_extra=api_schema.body(api_schema.CHECKPOINTS))
    async def checkpoints(request: Request) -> Response:
        """Ours: the checkpoints of several calls in one request (our SDK, under load)."""
        # served by HotRoutes below; this route documents it (and answers if mounted alone)
        return await checkpoints_answer(executor, await request.body())

    @app.get("/v1/event-keys")
    async def list_event_keys() -> Response:
        return ORJSONResponse({"data": await executor.auth.event_keys()})

    @app.post("/v1/event-keys", openapi_extra=api_schema.body(api_schema.EVENT_KEY))
    async def add_event_key(request: Request) -> Response:
        try:
            body = bodies.loads(await request.body())
        except bodies.BodyError as exc:
            return _error(400, str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("key"), str):
            return _error(400, "key: required, the event key to accept (it is stored hashed)")
        try:
            found = await executor.auth.add_event_key(
                body["key"], str(body.get("name") or ""), executor.clock())
        except ValueError as exc:
            return _error(400, str(exc))
        return ORJSONResponse({"data": {"fingerprint": found[:16]}})

    @app.delete("/v1/event-keys/{fingerprint}")
    async def revoke_event_key(fingerprint: str) -> Response:
        if len(fingerprint) < 8:
            return _error(400, "fingerprint: give at least 8 characters")
        done = await executor.auth.revoke_event_key(fingerprint)
        if done == 0:
            return _error(404, f"no event key with fingerprint {fingerprint}")
        if done < 0:
            return _error(409, f"fingerprint {fingerprint} names {-done} keys; give more of it")
        return ORJSONResponse({"data": {"revoked": fingerprint}})

    app.include_router(api_ops.router(executor))  # runs list, metrics, bulk actions

    @app.get("/v1/apps")
    async def list_apps() -> Response:
        return ORJSONResponse({"data": await executor.read.apps()})

    @app.get("/v1/functions")
    async def list_functions() -> Response:
        return ORJSONResponse({"data": await executor.read.functions()})

    app.include_router(gql.router(executor.read))  # POST /v0/gql, for tooling
    ops_routes.mount(app, executor)  # heartbeats, function usage, /metrics

    @app.get("/v0/runs/{run_id}/batch")
    async def run_batch(run_id: str) -> Response:
        found = await executor.read.run_batch(run_id)
        if found is None:
            return _error(410, f"state of run {run_id} is gone")
        return ORJSONResponse(found)

    @app.get("/v0/runs/{run_id}/actions")
    async def run_actions(run_id: str) -> Response:
        found = await executor.read.run_actions(run_id)
        if found is None:
            return _error(410, f"state of run {run_id} is gone")
        return ORJSONResponse(found)

    # outermost: Host, Origin, content type and body size are checked before anything else
    # runs; then production access; then the hot routes, and FastAPI for every other
    app.front = RequestGuard(ProductionAccess(HotRoutes(app.routed, executor), executor),
                             allowed_hosts=executor.settings.allowed_hosts,
                             max_body_bytes=executor.settings.max_request_bytes)
    return app


class ExecutorApp(FastAPI):
    """The executor's FastAPI app behind its front: the request guard, production access
    and the hot routes are plain ASGI in front of FastAPI's own middleware stack (its error,
    telemetry and body-limit wrappers cost a few percent of the executor's CPU on every
    checkpoint, for routes that answer their errors themselves). Middleware added to the app
    (the dashboard's CSRF cookie) runs inside the front, for the other routes."""

    front: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)

    async def routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)
