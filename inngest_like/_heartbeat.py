"""`await inngest_like.heartbeat()`: a long step body tells the executor it is alive.

A step declared with `heartbeat_timeout=` that stops beating for that long is ended by the
executor and retried (as Temporal's activity heartbeats). Beats are throttled (at most one
per fifth of the heartbeat timeout, at most one a second otherwise), carry the usage the
body reported so far (so it counts even if the call is then ended), and are signed like the
SDK's other API calls. They are no-ops outside a step body and with executors that take no
heartbeats (Inngest's).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

import httpx

from . import wire
from ._client import http_client, tls_context
from ._scope import StepScope, current_step
from ._version import SDK_HEADER

log = logging.getLogger("inngest_like")

MAX_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.05


def _interval(scope: StepScope) -> float:
    if scope.heartbeat_s:
        return min(max(scope.heartbeat_s / 5, MIN_INTERVAL_S), MAX_INTERVAL_S)
    return MAX_INTERVAL_S


def _due(scope: StepScope | None, force: bool) -> StepScope | None:
    if scope is None or not scope.beats:
        return None
    now = time.monotonic()
    if not force and now - scope.last_beat < _interval(scope):
        return None
    scope.last_beat = now
    return scope


def request(scope: StepScope) -> tuple[str, dict[str, Any], dict[str, str]]:
    """(url, body, headers) of one beat of `scope` (its call must have a call id)."""
    call = scope.call
    assert call is not None and call.call_id is not None
    url = urllib.parse.urljoin(call.client.api_origin,
                               wire.heartbeat_path(urllib.parse.quote(call.run_id)))
    scope.dirty = False
    body = {"call": call.call_id, "step": scope.hashed, "name": scope.name,
            "attempt": call.attempt, wire.USAGE_FIELD: scope.report()}
    headers = {"Content-Type": "application/json", "X-Inngest-SDK": SDK_HEADER,
               **call.client.auth_headers()}
    return url, body, headers


def _alive(answer: httpx.Response) -> bool:
    if answer.status_code >= 400:
        log.warning("heartbeat refused: HTTP %s %s", answer.status_code, answer.text[:200])
        return True
    try:
        return bool(answer.json().get("alive", True))
    except (ValueError, AttributeError):
        return True


async def send(scope: StepScope) -> bool:
    """Post one beat now; True unless the executor says the call is over."""
    url, body, headers = request(scope)
    try:
        async with http_client() as http:
            return _alive(await http.post(url, json=body, headers=headers))
    except httpx.HTTPError as exc:  # a missed beat is not a failed step
        log.warning("heartbeat to %s failed: %s", url, exc)
        return True


async def heartbeat() -> bool:
    """Tell the executor this step body is alive (and send the usage reported so far).
    Returns False when the executor says the call is over (it ended it, e.g. for a
    timeout): the body may stop, its result would be dropped."""
    scope = _due(current_step(), force=False)
    return True if scope is None else await send(scope)


def heartbeat_sync() -> bool:
    """`heartbeat()` for the bodies of sync functions (run in a thread)."""
    scope = _due(current_step(), force=False)
    if scope is None:
        return True
    url, body, headers = request(scope)
    try:
        with httpx.Client(timeout=30, verify=tls_context()) as http:
            return _alive(http.post(url, json=body, headers=headers))
    except httpx.HTTPError as exc:
        log.warning("heartbeat to %s failed: %s", url, exc)
        return True
