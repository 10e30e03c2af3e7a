"""Checkpointing: the consecutive `step.run`s of one call run in one request.

A step that ran is persisted through the executor's checkpoint API
(`POST /v1/checkpoint/{run_id}/async`, protocol §8), and the function goes on in-process:
no new call, no replay, no resend of earlier outputs, so a step's cost does not grow with
the run. The save starts as soon as the function waits on anything (a step is durable
about as soon as its body returns, even when the function then awaits something for long),
and the next step's body starts only once it answered 2xx. A function that returns without
waiting on anything after its last step sends that step with its end instead (206
`[StepRun, RunComplete]`, as JS v4 answers; to an executor of ours only when it says it
takes that): one checkpoint request fewer per call; that step is then durable when the
call's answer is, so a crash between its body and the answer runs it again, as without
checkpointing. Before a sleep, a wait, a parallel group or an error is answered, the step
is saved first. The step's output is written when its body returns, so the value the
function goes on with may change without changing what is saved. Any failure falls back to
the plain protocol: the StepRun goes back alone in the call's 206 answer, where the
executor saves it (first value wins), so nothing is lost and no step runs twice because a
checkpoint was slow or lost. With inngest_like's executor, the checkpoints of concurrent
calls go to it together (`POST /v1/checkpoints`, `Batch`).

A checkpoint is on every step's path: to inngest_like's executor they go over _http.py's
kept-alive connections (about a quarter of aiohttp's CPU per request), to other servers
(Inngest's own) through aiohttp with one kept-alive session per event loop (httpx costs
about 3x per request here, bench/driver.py).
"""

from __future__ import annotations

import asyncio
import io
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from . import _http

if TYPE_CHECKING:
    from ._client import Inngest

# after this long in one request, steps go back to the executor the plain way: the call's
# lease and its timeout (the executor's --call-timeout) stay far away
MAX_RUNTIME_S = 120.0
ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 1 << 20  # the executor's answer to a batch: a status per checkpoint


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


def _payload(body: bytes) -> bytes | io.BytesIO:
    """A request body as aiohttp sends it without a warning (it wants a stream above 1 MiB:
    a step's output may be up to 4 MiB)."""
    return body if len(body) < 1 << 20 else io.BytesIO(body)


class Batch:
    """Group commit of the checkpoints of concurrent calls, for inngest_like's executor
    (`POST /v1/checkpoints`): a checkpoint goes out at once when fewer than IN_FLIGHT
    batches are on their way, else with every other one that arrives meanwhile in the next
    batch. One call alone waits for nobody; a burst of runs pays a fraction of a request
    per step, on both sides."""

    IN_FLIGHT = 2
    MAX_SIZE = 256  # checkpoints per request (the executor takes up to 512)
    MAX_BYTES = 1 << 20  # and their bytes, unless one alone is larger (the executor's cap
    # on a request's body is 8 MiB by default, and an SDK's step output at most 4 MiB)

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        # its own kept-alive connections (_http.py: a quarter of aiohttp's CPU per request)
        self.http = _http.Client(connect_timeout_s=ATTEMPT_TIMEOUT_S,
                                 max_body_bytes=MAX_ANSWER_BYTES)
        self.url = url
        self.headers = headers
        self.waiting: list[tuple[bytes, asyncio.Future[int]]] = []
        self.in_flight = 0  # requests on their way
        self.tasks: set[asyncio.Task[None]] = set()  # those sent for others (kept alive)

    async def save(self, entry: dict[str, Any]) -> int:
        """The HTTP status the executor gave this checkpoint (599: no answer)."""
        raw = orjson.dumps(entry)
        if self.in_flight < self.IN_FLIGHT and not self.waiting:
            # nothing to wait for: sent from this task, without a task or a future
            self.in_flight += 1
            try:
                return (await self._request([raw]))[0]
            finally:
                self._sent()
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting.append((raw, done))
        if self.in_flight < self.IN_FLIGHT:
            self._send()
        return await done

    def _send(self) -> None:
        count, size = 0, 0
        for raw, _ in self.waiting[:self.MAX_SIZE]:
            size += len(raw)
            if count and size > self.MAX_BYTES:
                break
            count += 1
        batch, self.waiting = self.waiting[:count], self.waiting[count:]
        self.in_flight += 1
        task = asyncio.ensure_future(self._post(batch))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _sent(self) -> None:
        self.in_flight -= 1
        if self.waiting and self.in_flight < self.IN_FLIGHT:
            self._send()

    async def _post(self, batch: list[tuple[bytes, asyncio.Future[int]]]) -> None:
        statuses: list[int] = []
        try:
            statuses = await self._request([raw for raw, _ in batch])
        finally:
            for (_, done), status in zip(batch, statuses, strict=False):
                if not done.done():
                    done.set_result(status)
            for _, done in batch[len(statuses):]:  # cancelled: no answer
                if not done.done():
                    done.set_result(599)
            self._sent()

    async def _request(self, raws: list[bytes]) -> list[int]:
        """One request: each checkpoint's status (599 for each without a readable answer,
        and each call tries its checkpoint again)."""
        try:
            body = b'{"checkpoints":[' + b",".join(raws) + b"]}"
            # a checkpoint saved twice keeps its first value: sending it again is safe
            answer = await self.http.post(self.url, body, self.headers, ATTEMPT_TIMEOUT_S,
                                          retry_stale=True)
            if answer.status != 200:
                return [answer.status] * len(raws)
            statuses = [int(result["status"]) for result in orjson.loads(answer.body)["results"]]
            return statuses if len(statuses) == len(raws) else [599] * len(raws)
        except Exception:
            return [599] * len(raws)


class Batches:
    """One Batch per event loop and API origin."""

    def __init__(self) -> None:
        self._by_loop: dict[tuple[asyncio.AbstractEventLoop, str], Batch] = {}

    def get(self, client: Inngest) -> Batch:
        loop = asyncio.get_running_loop()
        batch = self._by_loop.get((loop, client.api_origin))
        if batch is None:
            for stale in [k for k in self._by_loop if k[0].is_closed()]:
                del self._by_loop[stale]
            batch = Batch(urllib.parse.urljoin(client.api_origin, "/v1/checkpoints"),
                          {"Content-Type": "application/json", **client.auth_headers()})
            self._by_loop[(loop, client.api_origin)] = batch
        return batch


class Checkpointer:
    """The checkpoints of one call request."""

    def __init__(self, client: Inngest, sessions: Sessions, ctx: dict[str, Any],
                 generation: str = "", traceparent: str | None = None,
                 batch: Batch | None = None, *, fold: bool = True) -> None:
        self.client = client
        self.sessions = sessions
        self.batch = batch  # inngest_like's executor: checkpoints go with others
        self.fold = fold  # the executor takes a last step with the end (else: saved first)
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

    def _take(self) -> dict[str, Any] | None:
        """The held op, no longer held (its save, if not started, will not start)."""
        op, self.held = self.held, None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        return op

    async def flush(self) -> dict[str, Any] | None:
        """Persist the held op: None when saved (or nothing was held), else the op, which the
        caller answers the plain way (the call's 206)."""
        op = self._take()
        if op is None:
            return None
        saving, self._saving = self._saving, None
        saved = await saving if saving is not None else await self.save(op)
        return None if saved else op

    async def at_end(self) -> dict[str, Any] | None:
        """The function returned: the held op to send with its end, or None when it was
        saved already (its save had started; without `fold`, it is saved now)."""
        if self._saving is not None or not self.fold:
            return await self.flush()
        return self._take()

    async def save(self, op: dict[str, Any]) -> bool:
        """Persist one StepRun op; True when the executor answered 2xx (the step is saved
        and the function may go on), False to fall back to the plain protocol."""
        if time.monotonic() > self.deadline:
            return False
        entry = {**self.body, "steps": [op], "ts": int(time.time() * 1000)}
        if self.batch is not None and self.traceparent:
            entry["traceparent"] = self.traceparent
        for attempt in range(ATTEMPTS):
            status = await self._post(entry)
            if 200 <= status < 300:
                return True
            if status < 500:
                break  # refused (no such API, the run ended, ...): asking again won't help
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(0.05 * 2**attempt)
        self.deadline = 0.0  # the rest of this request uses the plain protocol
        return False

    async def _post(self, entry: dict[str, Any]) -> int:
        """The executor's HTTP status for one checkpoint (599: no answer)."""
        if self.batch is not None:
            return await self.batch.save(entry)
        try:
            async with self.sessions.get().post(self.url, data=_payload(orjson.dumps(entry)),
                                                headers=self.headers) as answer:
                await answer.read()
                return answer.status
        except (aiohttp.ClientError, TimeoutError):
            return 599
