"""Checkpointing: the consecutive `step.run`s of one call run in one request.

A step that ran is persisted through the executor's checkpoint API
(`POST /v1/checkpoint/{run_id}/async`, protocol §8), and the function goes on in-process:
no new call, no replay, no resend of earlier outputs, so a step's cost does not grow with
the run. The save starts as soon as the function waits on anything (so a step is durable
about as soon as its body returns), and the next step's body starts only once it answered
2xx. A function that returns without waiting on anything after its last step sends that
step with its end instead (206 `[StepRun, RunComplete]`, as JS v4 answers): one checkpoint
request fewer per call. Before a sleep, a wait, a parallel group or an error is answered,
the step is saved first. Any failure falls back to the plain protocol: the StepRun goes
back alone in the call's 206 answer, where the executor saves it (first value wins), so
nothing is lost and no step runs twice because a checkpoint was slow or lost.

aiohttp with one kept-alive session per event loop: a checkpoint is on every step's path,
and httpx costs about 3x per request here (bench/driver.py).
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

if TYPE_CHECKING:
    from ._client import Inngest

# after this long in one request, steps go back to the executor the plain way: the call's
# lease and its timeout (the executor's --call-timeout) stay far away
MAX_RUNTIME_S = 120.0
ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 5.0


class Sessions:
    """One aiohttp session per event loop (a client may serve from several loops in tests)."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._by_loop.get(loop)
        if session is None or session.closed:
            for stale in [lp for lp in self._by_loop if lp.is_closed()]:
                del self._by_loop[stale]
            session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S),
                skip_auto_headers=("User-Agent",))
            self._by_loop[loop] = session
        return session

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        session = self._by_loop.pop(loop, None)
        if session is not None:
            await session.close()


class Checkpointer:
    """The checkpoints of one call request."""

    def __init__(self, client: Inngest, sessions: Sessions, ctx: dict[str, Any],
                 generation: str = "", traceparent: str | None = None) -> None:
        self.client = client
        self.sessions = sessions
        self.run_id = str(ctx["run_id"])
        # the queue item and its lease's generation: the executor refuses checkpoints of a
        # call that lost its lease (another call of the run may have begun)
        self.body = {"run_id": self.run_id, "fn_id": str(ctx.get("fn_id") or ""),
                     "qi_id": str(ctx.get("qi_id") or ""), "generation_id": generation,
                     "request_started_at": int(time.time() * 1000)}
        # the call's span (when the executor traces): the checkpointed steps' spans nest in it
        self.traceparent = traceparent
        self.deadline = time.monotonic() + MAX_RUNTIME_S
        # the same for every step of the call: built once (a checkpoint is on every step's
        # path)
        self.url = urllib.parse.urljoin(
            client.api_origin, f"/v1/checkpoint/{urllib.parse.quote(self.run_id)}/async")
        self.headers = {"Content-Type": "application/json", **client.auth_headers()}
        if traceparent:
            self.headers["traceparent"] = traceparent
        self.held: dict[str, Any] | None = None  # a StepRun op that ran, not known saved
        self._soon: asyncio.Handle | None = None  # starts its save once the function waits
        self._saving: asyncio.Task[bool] | None = None

    def hold(self, op: dict[str, Any]) -> None:
        """Hold a step that just ran. Its save starts at the event loop's next turn: if the
        function returns before waiting on anything, the step goes with its end instead."""
        self.held = op
        self._soon = asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._soon = None
        if self.held is not None and self._saving is None:
            self._saving = asyncio.ensure_future(self.save(self.held))

    async def flush(self) -> dict[str, Any] | None:
        """Persist the held op: None when saved (or nothing was held), else the op, which the
        caller answers the plain way (the call's 206)."""
        op, self.held = self.held, None
        if op is None:
            return None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        saving, self._saving = self._saving, None
        saved = await saving if saving is not None else await self.save(op)
        return None if saved else op

    async def at_end(self) -> dict[str, Any] | None:
        """The function returned: the held op to send with its end, or None when it was
        saved already (its save had started)."""
        if self._saving is not None:
            return await self.flush()
        op, self.held = self.held, None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        return op

    async def save(self, op: dict[str, Any]) -> bool:
        """Persist one StepRun op; True when the executor answered 2xx (the step is saved
        and the function may go on), False to fall back to the plain protocol."""
        if time.monotonic() > self.deadline:
            return False
        body = orjson.dumps({**self.body, "steps": [op], "ts": int(time.time() * 1000)})
        for attempt in range(ATTEMPTS):
            try:
                async with self.sessions.get().post(self.url, data=body,
                                                    headers=self.headers) as answer:
                    await answer.read()
                    if 200 <= answer.status < 300:
                        return True
                    if answer.status < 500:
                        break  # refused (no such API, the run ended, ...): asking again won't help
            except (aiohttp.ClientError, TimeoutError):
                pass
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(0.05 * 2**attempt)
        self.deadline = 0.0  # the rest of this request uses the plain protocol
        return False
