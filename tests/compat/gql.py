"""The four GraphQL query shapes that tooling written for Inngest's dev server sends to
`POST /v0/gql` (the official Python SDK's integration suite reads runs this way), written
here from the schema's field list, and small readers over them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from ..procs import Executor, wait_for

RUN = """
query Run($runID: String!) {
  run(runID: $runID) { status output }
  runTrigger(runID: $runID) { payloads }
}"""

STEPS = """
query Steps($runID: String!) {
  run(runID: $runID) { trace { childrenSpans { name outputID } } }
}"""

STEP_OUTPUT = """
query StepOutput($outputID: String!) {
  runTraceSpanOutputByID(outputID: $outputID) { data error { message name stack } }
}"""

EVENT_RUNS = """
query EventRuns($eventID: ID!) {
  event(query: {eventId: $eventID}) { functionRuns { id } }
}"""


def post(ex: Executor, query: str, variables: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{ex.url}/v0/gql", json={"query": query, "variables": variables or {}},
                      headers=headers if headers is not None else getattr(ex, "headers", {}),
                      timeout=10)


def data(ex: Executor, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = post(ex, query, variables)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    return dict(body["data"])


def run_ids_of_event(ex: Executor, event_id: str, count: int = 1,
                     timeout: float = 20) -> list[str]:
    def check() -> list[str] | None:
        event = data(ex, EVENT_RUNS, {"eventID": event_id})["event"]
        runs = (event or {}).get("functionRuns") or []
        return [r["id"] for r in runs] if len(runs) == count else None

    return wait_for(check, timeout, f"{count} runs of event {event_id} through /v0/gql")


def run_when(ex: Executor, run_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
    """`{status, output (parsed), event (the first trigger, parsed)}` once `status`."""
    def check() -> dict[str, Any] | None:
        got = data(ex, RUN, {"runID": run_id})
        if got["run"]["status"] != status:
            return None
        output = got["run"]["output"]
        return {"status": status, "output": None if output is None else json.loads(output),
                "event": json.loads(got["runTrigger"]["payloads"][0])}

    return wait_for(check, timeout, f"run {run_id} to be {status} through /v0/gql")


def step_spans(ex: Executor, run_id: str) -> list[dict[str, Any]]:
    trace = data(ex, STEPS, {"runID": run_id})["run"]["trace"]
    return list(trace["childrenSpans"])


def step_output(ex: Executor, run_id: str, step: str) -> dict[str, Any]:
    """`{"data": <parsed>}` or `{"data": None, "error": {...}}` of the step named `step`."""
    output_id = next(s["outputID"] for s in step_spans(ex, run_id) if s["name"] == step)
    assert output_id, f"step {step!r} of run {run_id} has no output id"
    got = data(ex, STEP_OUTPUT, {"outputID": output_id})["runTraceSpanOutputByID"]
    out: dict[str, Any] = {"data": None if got["data"] is None else json.loads(got["data"])}
    if got["error"] is not None:
        out["error"] = got["error"]
    return out
