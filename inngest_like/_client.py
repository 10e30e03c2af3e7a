"""The client: app identity, mode, origins, function registration, and sending events."""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import logging
import os
import random
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from . import signing
from ._checkpoint import Batches, Sessions
from ._errors import ConfigError, SendEventsError
from ._event import Event
from ._function import (
    AgentOptions,
    Batch,
    Budget,
    Cancel,
    Concurrency,
    Debounce,
    FlowOptions,
    Function,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    Trigger,
)
from ._version import SDK_HEADER

DEV_ORIGIN = "http://127.0.0.1:8288/"
CLOUD_API_ORIGIN = "https://api.inngest.com/"
CLOUD_EVENT_ORIGIN = "https://inn.gs/"
_SEND_ATTEMPTS = 5


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process: httpx would otherwise build one per client,
    loading the CA bundle each time (~40 ms of CPU), on every send and every sync."""
    return ssl.create_default_context()


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=30, verify=tls_context(), **kwargs)


def _env_dev() -> str | None:
    value = os.environ.get("INNGEST_DEV")
    if value is None or value.strip().lower() in ("", "0", "false"):
        return None
    return value.strip()


def _origin(value: str, dev: bool) -> str:
    if "://" not in value:
        value = ("http://" if dev else "https://") + value
    return value if value.endswith("/") else value + "/"


class Inngest:
    """One app: `Inngest(app_id="llm-pipeline")`. Dev mode via `INNGEST_DEV=1` or
    `is_production=False`; production mode requires a signing key."""

    def __init__(
        self,
        app_id: str,
        *,
        is_production: bool | None = None,
        event_key: str | None = None,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        api_base_url: str | None = None,
        event_api_base_url: str | None = None,
        logger: logging.Logger | None = None,
        checkpointing: bool = True,
    ) -> None:
        if not app_id:
            raise ConfigError("Inngest: app_id must be a non-empty string")
        self.app_id = app_id
        dev_env = _env_dev()
        self.is_production = is_production if is_production is not None else dev_env is None
        dev = not self.is_production
        dev_url = dev_env if dev_env and "://" in dev_env else None
        default = DEV_ORIGIN if dev else None
        self.api_origin = _origin(
            api_base_url
            or os.environ.get("INNGEST_API_BASE_URL")
            or os.environ.get("INNGEST_BASE_URL")
            or dev_url
            or default
            or CLOUD_API_ORIGIN,
            dev,
        )
        self.event_api_origin = _origin(
            event_api_base_url
            or os.environ.get("INNGEST_EVENT_API_BASE_URL")
            or os.environ.get("INNGEST_BASE_URL")
            or dev_url
            or default
            or CLOUD_EVENT_ORIGIN,
            dev,
        )
        self.event_key = event_key or os.environ.get("INNGEST_EVENT_KEY") or ""
        self.signing_key = signing_key or os.environ.get("INNGEST_SIGNING_KEY") or None
        self.signing_key_fallback = (
            signing_key_fallback or os.environ.get("INNGEST_SIGNING_KEY_FALLBACK") or None
        )
        for name, key in (("signing_key (INNGEST_SIGNING_KEY)", self.signing_key),
                          ("signing_key_fallback (INNGEST_SIGNING_KEY_FALLBACK)",
                           self.signing_key_fallback)):
            problem = signing.key_problem(key) if key else None
            if problem:
                raise ConfigError(f"Inngest: {name} {problem}")
        self.logger = logger or logging.getLogger("inngest_like")
        self.functions: dict[str, Function] = {}
        # consecutive steps of an async function run in one request, each persisted through
        # the executor's checkpoint API (see _checkpoint.py); False: one call per step
        self.checkpointing = checkpointing
        self.checkpoint_sessions = Sessions()
        self.checkpoint_batches = Batches()
        # one connection pool for this client's sends and API calls, per event loop
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    def create_function(
        self,
        *,
        fn_id: str,
        trigger: Trigger | Sequence[Trigger],
        retries: int | None = None,
        name: str | None = None,
        cancel: Cancel | Sequence[Cancel] | None = None,
        timeouts: Timeouts | None = None,
        on_failure: Callable[..., Any] | None = None,
        concurrency: Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch_events: Batch | None = None,
        priority: Priority | None = None,
        singleton: Singleton | None = None,
        idempotency: str | None = None,
        idempotency_period: int | float | datetime.timedelta | None = None,
        budget: Budget | None = None,
        step_timeout: int | float | datetime.timedelta | None = None,
        stall_threshold: int | float | datetime.timedelta | None = None,
    ) -> Callable[[Callable[..., Any]], Function]:
        """Declare a durable function; returns a decorator."""
        triggers = [trigger] if isinstance(trigger, Trigger) else list(trigger)

        def decorator(handler: Callable[..., Any]) -> Function:
            fn = Function(
                app_id=self.app_id,
                fn_id=fn_id,
                name=name,
                triggers=triggers,
                retries=retries,
                handler=handler,
                cancel=[cancel] if isinstance(cancel, Cancel) else list(cancel or []),
                timeouts=timeouts,
                on_failure=on_failure,
                flow=FlowOptions(
                    concurrency=([concurrency] if isinstance(concurrency, Concurrency)
                                 else list(concurrency or [])),
                    throttle=throttle, rate_limit=rate_limit, debounce=debounce,
                    batch_events=batch_events, priority=priority, singleton=singleton,
                    idempotency=idempotency, idempotency_period=idempotency_period,
                ),
                agent=AgentOptions(budget=budget, step_timeout=step_timeout,
                                   stall_threshold=stall_threshold),
            )
            self.functions[fn.id] = fn
            return fn

        return decorator

    def auth_headers(self, key: str | None = None) -> dict[str, str]:
        """`Authorization: Bearer <hashed signing key>` for the executor's API, if keyed."""
        key = key or self.signing_key
        if not key:
            return {}
        return {"Authorization": f"Bearer {signing.bearer(key)}"}

    def http(self) -> httpx.AsyncClient:
        """This client's connection pool (a new one if the event loop changed)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.is_closed or self._http_loop is not loop:
            self._http, self._http_loop = http_client(), loop
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool (`serve()` does it when the app shuts down)."""
        http, self._http = self._http, None
        if http is not None and self._http_loop is asyncio.get_running_loop():
            await http.aclose()

    async def api_request(self, method: str, url: str, *, content: bytes | None = None,
                          headers: dict[str, str] | None = None) -> httpx.Response:
        """A call to the executor's API with Bearer auth; on 401 or 403 it is made once more
        with the fallback key, so keys can be rotated on the server first."""
        keys: list[str | None] = [k for k in (self.signing_key, self.signing_key_fallback) if k]
        keys = keys or [None]  # dev mode without a key: no Authorization header
        for i, key in enumerate(keys):
            response = await self.http().request(
                method, url, content=content, headers={**(headers or {}),
                                                       **self.auth_headers(key)})
            if response.status_code not in (401, 403) or i == len(keys) - 1:
                return response
        raise AssertionError("unreachable")

    # -- sending events ---------------------------------------------------------------
    def _send_request(self, events: Event | Sequence[Event]) -> tuple[str, bytes, dict[str, str]]:
        batch = [events] if isinstance(events, Event) else list(events)
        now = int(time.time() * 1000)
        wire = []
        for ev in batch:
            body = ev.to_wire()
            body.setdefault("ts", now)
            wire.append(body)
        key = self.event_key or "NO_EVENT_KEY_SET"
        url = urllib.parse.urljoin(self.event_api_origin, f"/e/{urllib.parse.quote(key)}")
        # The seed lets the executor derive the same event ids if this request is retried.
        seed = f"{now},{base64.b64encode(os.urandom(10)).decode()}"
        headers = {
            "Content-Type": "application/json",
            "X-Inngest-SDK": SDK_HEADER,
            "User-Agent": SDK_HEADER,
            "X-Inngest-Event-Id-Seed": seed,
        }
        return url, orjson.dumps(wire), headers

    @staticmethod
    def _parse_send(response: httpx.Response) -> list[str]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        ids = [str(i) for i in body.get("ids", [])] if isinstance(body, dict) else []
        if response.status_code >= 400 or (isinstance(body, dict) and body.get("error")):
            error = body.get("error") if isinstance(body, dict) else None
            raise SendEventsError(str(error or f"HTTP {response.status_code}"), ids)
        return ids

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """Send one event or a list; returns their ids in order."""
        url, body, headers = self._send_request(events)
        http = self.http()
        for attempt in range(_SEND_ATTEMPTS):
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                if attempt == _SEND_ATTEMPTS - 1:
                    raise
            else:
                if response.status_code < 500 or attempt == _SEND_ATTEMPTS - 1:
                    return self._parse_send(response)
            await asyncio.sleep(0.1 * 2**attempt + random.random() * 0.1)
        raise AssertionError("unreachable")

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        url, body, headers = self._send_request(events)
        with httpx.Client(timeout=30, verify=tls_context()) as http:
            for attempt in range(_SEND_ATTEMPTS):
                try:
                    response = http.post(url, content=body, headers=headers)
                except httpx.TransportError:
                    if attempt == _SEND_ATTEMPTS - 1:
                        raise
                else:
                    if response.status_code < 500 or attempt == _SEND_ATTEMPTS - 1:
                        return self._parse_send(response)
                time.sleep(0.1 * 2**attempt + random.random() * 0.1)
        raise AssertionError("unreachable")
