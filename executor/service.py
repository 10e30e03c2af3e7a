"""Wires one executor process: Redis, scripts, registry, queue, run state, worker, syncer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import ssl
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from inngest_like import signing

from . import keys, layout
from .auth import Auth
from .clock import Clock, system_ms
from .driver import CONNECT_TIMEOUT_S, MAX_RESPONSE_BYTES, Driver
from .events import Limits
from .ingest import Ingest
from .lifecycle import Lifecycle
from .operations import Operations
from .queue import Queue
from .read_model import ReadModel
from .redis_client import is_cluster_client
from .registry import Registry, SyncError
from .request_guard import DEFAULT_MAX_BODY_BYTES
from .retention import DEFAULT_RETENTION_MS, Retention
from .scheduler import Scheduler
from .scripts import Scripts
from .state import RunState
from .tracing import Tracing
from .worker import Worker

log = logging.getLogger("inngest_like.executor")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: httpx builds one per client otherwise (~40 ms of CPU
    loading CA certificates) on every periodic re-sync."""
    return ssl.create_default_context()


@dataclasses.dataclass
class Settings:
    mode: str = "dev"  # "dev" or "cloud" (inngest-like start)
    app_urls: list[str] = dataclasses.field(default_factory=list)
    retry_interval_s: float | None = None
    lease_ms: int = 20_000
    # a call to the app that has not answered after this long is a failed attempt (retried
    # with backoff); long LLM steps need minutes, a hung app must not hold a run for hours
    call_timeout_s: float = 600.0
    retention_ms: int = DEFAULT_RETENTION_MS  # ended runs and events are kept this long
    slots: int = 64
    poll_interval_s: float = 5.0
    limits: Limits = dataclasses.field(default_factory=Limits)
    run_worker: bool = True
    signing_key: str | None = None
    signing_key_fallback: str | None = None
    dashboard_password: str | None = None
    allowed_hosts: list[str] | None = None  # `Host` names accepted; None: any (request_guard)
    max_request_bytes: int = DEFAULT_MAX_BODY_BYTES
    trust_proxy: bool = False  # X-Forwarded-* come from a trusted TLS-terminating proxy
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    max_response_bytes: int = MAX_RESPONSE_BYTES
    # agent operations: a run without progress for this long is flagged stalled (functions
    # may set their own `stallThreshold`); /metrics on or off, and its own bearer token
    stall_threshold_ms: int = 5 * 60 * 1000
    metrics: bool = True
    metrics_token: str | None = None
    # events are acknowledged only once this many Redis replicas have them (WAIT), so a
    # failover of the primary cannot lose an acknowledged event; 0: the primary's word
    ack_replicas: int = 0
    # rename a drained store of an earlier key layout at start (layout.py); else refuse it
    migrate: bool = False
    # how many shards a new store is cut into (None: the store's own count, 1 for a new
    # one); a store keeps its count
    queue_shards: int | None = None
    ack_timeout_ms: int = 1000
    # an idle worker starts a new run's first call while the run is being stored (plan-only
    # until stored: Worker.eager); off: the call starts once the ingest script answered
    eager_calls: bool = True

    @property
    def production(self) -> bool:
        return self.mode == "cloud"


async def _read_capped(answer: httpx.Response, limit: int) -> bytes:
    """An app's answer to a sync, refused past `limit` bytes (ValueError)."""
    chunks, size = [], 0
    async for chunk in answer.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise ValueError(f"the sync answer is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _sync_answer_error(status: int, raw: bytes) -> str | None:
    body: Any = {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    if status >= 400:
        detail = body.get("message") or body.get("error") if isinstance(body, dict) else ""
        return f"HTTP {status}: {detail or ''}"
    if isinstance(body, dict) and body.get("error"):
        return str(body["error"])
    return None


class Executor:
    def __init__(self, redis: Redis, settings: Settings, clock: Clock = system_ms,
                 tracing: Tracing | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.clock = clock
        self.scripts = Scripts(redis)
        self.registry = Registry(redis)
        self.queue = Queue(redis, self.scripts, cluster=is_cluster_client(redis))
        self.state = RunState(redis, self.scripts)
        self.read = ReadModel(redis)
        self.driver = Driver(settings.call_timeout_s,
                             connect_timeout_s=settings.connect_timeout_s,
                             max_response_bytes=settings.max_response_bytes)
        self.auth = Auth(redis, production=settings.production,
                         signing_keys=[settings.signing_key or "",
                                       settings.signing_key_fallback or ""],
                         dashboard_password=settings.dashboard_password)
        self.ingest = Ingest(redis, self.scripts, self.registry, self.state, clock)
        self.lifecycle = Lifecycle(redis, self.ingest, clock)
        self.ingest.on_run_ended = self.lifecycle.run_ended
        # tracing is on when the OTEL_* variables say so (or a test passes its own)
        self.operations = Operations(
            redis, self.scripts, self.registry, self.ingest, clock,
            tracing=tracing if tracing is not None else Tracing.from_env(),
            metrics=settings.metrics, stall_threshold_ms=settings.stall_threshold_ms)
        self.ingest.run_fields = self.operations.run_fields
        self.ingest.on_runs_started = self.operations.runs_started
        self.lifecycle.on_ended = self.operations.run_ended
        self.ingest.run_ended_quietly = self.operations.run_ended
        self.scheduler = Scheduler(redis, self.registry, self.ingest, self.lifecycle, clock,
                                   retention=Retention(redis, clock, settings.retention_ms),
                                   stalls=self.operations.stalls)
        self.worker = Worker(
            self.queue,
            self.state,
            self.registry,
            self.driver,
            self.ingest,
            self.operations,
            sign=self.auth.sign,
            clock=clock,
            slots=settings.slots,
            lease_ms=settings.lease_ms,
            retry_interval_s=settings.retry_interval_s,
        )
        self.ingest.lease_ms = settings.lease_ms
        self.ingest.ack_timeout_ms = settings.ack_timeout_ms
        if settings.run_worker:  # new runs' first calls go straight to this worker
            self.ingest.claim, self.ingest.unclaim = self.worker.claim, self.worker.unclaim
            self.ingest.adopt = self.worker.adopt
            if settings.eager_calls:
                self.ingest.eager = self.worker.eager
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        moved = await layout.check(self.redis, migrate=self.settings.migrate,
                                   shards=self.settings.queue_shards)
        if moved:
            log.warning("renamed %d keys of a store of key layout 1 to layout %s", moved,
                        keys.LAYOUT)
        await self.scripts.load_all()
        await self.registry.refresh()
        if self.settings.run_worker:
            self._tasks.append(asyncio.create_task(self.worker.run_forever()))
            self._tasks.append(asyncio.create_task(self.scheduler.run_forever()))
        if self.settings.app_urls:
            self._tasks.append(asyncio.create_task(self._sync_forever()))

    async def stop(self) -> None:
        self.worker.stop()
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.driver.close()
        await self.worker.opcodes.gateway.close()
        self.operations.shutdown()  # flushes spans not yet exported

    async def sync_app(self, url: str) -> str | None:
        """PUT the app's serve URL so its SDK registers (protocol §3.1); the error, if any.
        In production the PUT asks for an in-band sync (§3.3): the app answers with its
        registration, signed with our key, so nobody else can register on its behalf."""
        request, signature = self.auth.sign(orjson.dumps({"url": url}))
        in_band = self.settings.production and bool(signature)
        headers = {"Content-Type": "application/json",
                   "X-Inngest-Server-Kind": self.settings.mode, **signature,
                   **({"X-Inngest-Sync-Kind": "in_band"} if in_band else {})}
        error: str | None = None
        try:
            async with httpx.AsyncClient(timeout=30, verify=tls_context()) as http:
                async with http.stream("PUT", url, content=request, headers=headers) as answer:
                    raw = await _read_capped(answer, self.settings.max_request_bytes)
        except httpx.HTTPError as exc:
            error = f"unreachable: {exc.__class__.__name__}"
        except ValueError as exc:
            error = str(exc)
        else:
            if answer.headers.get("x-inngest-sync-kind") == "in_band" and answer.status_code < 300:
                error = await self._store_in_band(answer, raw)
            else:
                error = _sync_answer_error(answer.status_code, raw)
        if error:
            await self.registry.record_sync_error(url, error, self.clock())
        return error

    async def _store_in_band(self, answer: httpx.Response, raw: bytes) -> str | None:
        try:
            signing.verify(raw, answer.headers.get("x-inngest-signature"),
                           self.auth.signing_keys, canonicalise=False)
        except signing.SignatureError as exc:
            return f"in-band sync answer refused: {exc.message}"
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "in-band sync answer is not JSON"
        if not isinstance(body, dict):
            return "in-band sync answer is not a JSON object"
        language, version = body.get("sdk_language") or "", body.get("sdk_version") or ""
        registration = {"appName": body.get("app_id"), "url": body.get("url"),
                        "functions": body.get("functions"),
                        "sdk": body.get("sdk") or f"{language}:v{version}",
                        "framework": body.get("framework") or ""}
        try:
            await self.registry.sync(registration, raw, self.clock())
        except SyncError as exc:
            return str(exc)
        return None

    async def _sync_forever(self) -> None:
        """Dev mode: sync each `-u` app at start, then again every poll interval."""
        reported: dict[str, str | None] = {}
        while True:
            for url in self.settings.app_urls:
                error = await self.sync_app(url)
                if error != reported.get(url, "unset"):
                    if error:
                        log.warning("sync of %s failed: %s", url, error)
                    else:
                        log.info("synced %s", url)
                    reported[url] = error
            await asyncio.sleep(self.settings.poll_interval_s)
