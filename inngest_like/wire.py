"""The wire protocol's vocabulary, shared by the SDK and the executor (which imports only
this public module of the SDK): opcode names, which opcodes name a step, the shapes of
memos, and the time format. One definition, so the two sides cannot drift apart."""

from __future__ import annotations

import datetime
import enum
from typing import Any


class Opcode(enum.StrEnum):
    STEP_RUN = "StepRun"
    STEP = "Step"  # older SDKs' name for StepRun
    STEP_PLANNED = "StepPlanned"
    STEP_ERROR = "StepError"
    STEP_FAILED = "StepFailed"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE_FUNCTION = "InvokeFunction"
    RUN_COMPLETE = "RunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"
    AI_GATEWAY = "AIGateway"
    GATEWAY = "Gateway"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    STEP_NOT_FOUND = "StepNotFound"
    NONE = "None"

    @classmethod
    def parse(cls, name: Any) -> Opcode | None:
        """The opcode an SDK named (SDKs differ in case); None when unknown."""
        return _BY_LOWER.get(name.lower()) if isinstance(name, str) else None


_BY_LOWER = {op.value.lower(): op for op in Opcode}

# opcodes that act on one step and so must carry its hashed id
STEP_OPS = frozenset({
    Opcode.STEP_RUN, Opcode.STEP, Opcode.STEP_PLANNED, Opcode.STEP_ERROR, Opcode.STEP_FAILED,
    Opcode.SLEEP, Opcode.WAIT_FOR_EVENT, Opcode.INVOKE_FUNCTION, Opcode.AI_GATEWAY,
    Opcode.GATEWAY, Opcode.WAIT_FOR_SIGNAL,
})

DISCOVERY_STEP = "step"  # the stepId of a call that is not targeted at one step

# -- ours, beside Inngest's protocol: extra headers, fields and opts the official SDKs and
# executors ignore (agent operations, issue 13)
CALL_HEADER = "X-Inngest-Like-Call"  # on each call: its id, named by heartbeats and usage
# on each call: what this executor takes beyond what its CALL_HEADER promised (an SDK must
# not send an executor of ours what an earlier version of it cannot read)
FEATURES_HEADER = "X-Inngest-Like-Features"
BATCHED_CHECKPOINTS = "checkpoints"  # POST /v1/checkpoints
RUN_COMPLETE_WITH_STEPS = "run-complete"  # a 206 [StepRun..., RunComplete]
FEATURES = f"{BATCHED_CHECKPOINTS},{RUN_COMPLETE_WITH_STEPS}"
USAGE_FIELD = "usage"  # of StepRun / StepError / StepFailed (and heartbeats): the body's
# spend so far, {"calls": n, "models": {name: {input_tokens, output_tokens, cost_usd}}}
TIMEOUT_OPT = "timeout"  # StepPlanned opts: the step's own timeout ("30s")
HEARTBEAT_TIMEOUT_OPT = "heartbeatTimeout"  # and heartbeat timeout


def heartbeat_path(run_id: str) -> str:
    """Where a step body's heartbeats go (POST, JSON: call, step, name, attempt, usage)."""
    return f"/v1/runs/{run_id}/heartbeat"


def memo_data(value: Any) -> dict[str, Any]:
    """A step's memo as the executor stores and sends it back: {"data": output}."""
    return {"data": value}


def memo_error(error: dict[str, Any]) -> dict[str, Any]:
    """A failed step's memo: {"error": {name, message, stack}}."""
    return {"error": error}


def rfc3339(moment: datetime.datetime) -> str:
    """The wire's time format: UTC with milliseconds, `2026-12-01T10:31:41.123Z` (a naive
    time is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def rfc3339_ms(ms: int) -> str:
    return rfc3339(datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC))


def parse_time_ms(text: str) -> int:
    """An RFC 3339 time as unix ms (no zone = UTC); ValueError when it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise ValueError(f"not an RFC 3339 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)
