"""`POST /v0/gql`: the GraphQL reads that tooling written for Inngest's dev server sends (the
official SDKs' integration suites read a run, its trigger, its steps' outputs and an event's
runs this way), answered from the read model.

The schema is the part of the dev server's schema that such tooling queries, with the same
type, field and argument names and types, so a query that works there works here (variable
types must match exactly, e.g. `run(runID: String!)`, `event(query: {eventId: ID!})`). A field
we do not serve is a GraphQL validation error naming it, never a silent null.

Output ids are `<run id>:<hashed step id>` for a step and `<run id>` for the run's own output.
"""

from __future__ import annotations

import datetime
from inspect import isawaitable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from graphql import (
    ExecutionResult,
    GraphQLError,
    build_schema,
    execute,
    parse,
    validate,
)

from .read_model import ReadModel

PATH = "/v0/gql"
Info = Any  # graphql-core's GraphQLResolveInfo, generic from 3.3 on: the resolvers ignore it

SDL = '''
"RFC 3339 time"
scalar Time
scalar ULID
"JSON text"
scalar Bytes

enum FunctionRunStatus { COMPLETED FAILED CANCELLED RUNNING QUEUED }
enum RunTraceSpanStatus { FAILED QUEUED RUNNING COMPLETED WAITING CANCELLED }
enum StepOp { INVOKE RUN SLEEP WAIT_FOR_EVENT AI_GATEWAY }

input EventQuery {
  workspaceId: ID! = "local"
  eventId: ID!
}

type Query {
  run(runID: String!): FunctionRunV2
  runTrigger(runID: String!): RunTraceTrigger!
  runTraceSpanOutputByID(outputID: String!): RunTraceSpanOutput!
  event(query: EventQuery!): Event
}

type FunctionRunV2 {
  id: ULID!
  functionID: String!
  status: FunctionRunStatus!
  "the run's final body as JSON text: the return value, or the SDK's error as sent"
  output: Bytes
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  eventName: String
  triggerIDs: [ULID!]!
  isBatch: Boolean!
  trace: RunTraceSpan
}

type RunTraceSpan {
  runID: ULID!
  spanID: String!
  traceID: String!
  "a step's span is named by the user's step id"
  name: String!
  status: RunTraceSpanStatus!
  attempts: Int
  duration: Int
  outputID: String
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  childrenSpans: [RunTraceSpan!]!
  stepOp: StepOp
  stepID: String
  isRoot: Boolean!
  parentSpanID: String
}

type RunTraceSpanOutput {
  input: Bytes
  data: Bytes
  error: StepError
}

type StepError {
  message: String!
  name: String
  stack: String
}

type RunTraceTrigger {
  eventName: String
  IDs: [ULID!]!
  "each event of the run, as JSON text"
  payloads: [Bytes!]!
  timestamp: Time!
  isBatch: Boolean!
  cron: String
}

type Event {
  id: ULID!
  externalID: String
  name: String
  createdAt: Time
  payload: String
  raw: String
  totalRuns: Int
  functionRuns: [FunctionRun!]
}

type FunctionRun {
  id: ID!
  functionID: String!
  eventID: ID!
  status: FunctionRunStatus
  output: String
  startedAt: Time
  finishedAt: Time
}
'''

SCHEMA = build_schema(SDL)

# A skipped run (rate limit, singleton skip) never ran: Inngest stores no run for it at all.
_RUN_STATUS = {"Running": "RUNNING", "Completed": "COMPLETED", "Failed": "FAILED",
               "Cancelled": "CANCELLED", "Skipped": "CANCELLED"}
_SPAN_STATUS = {"Completed": "COMPLETED", "Failed": "FAILED", "Cancelled": "CANCELLED",
                "Retrying": "RUNNING", "Sleeping": "WAITING", "Waiting": "WAITING",
                "Invoking": "WAITING"}
_STEP_OP = {"steprun": "RUN", "step": "RUN", "steperror": "RUN", "stepfailed": "RUN",
            "sleep": "SLEEP", "waitforevent": "WAIT_FOR_EVENT", "invokefunction": "INVOKE",
            "aigateway": "AI_GATEWAY"}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(datetime.datetime.fromisoformat(iso).timestamp() * 1000)


def _duration(started: str | None, ended: str | None) -> int | None:
    start, end = _ms(started), _ms(ended)
    return end - start if start is not None and end is not None else None


def _step_error(error: Any) -> dict[str, Any]:
    """An error object as the schema's StepError (message is required there)."""
    if not isinstance(error, dict):
        return {"message": str(error), "name": None, "stack": None}
    stack = error.get("stack")
    return {"message": str(error.get("message") or ""),
            "name": None if error.get("name") is None else str(error["name"]),
            "stack": None if stack is None else str(stack)}


def _output_id(run_id: str, step_hash: str = "") -> str:
    return f"{run_id}:{step_hash}" if step_hash else run_id


class Root:
    """The Query type's resolvers (graphql-core's default resolver calls these methods);
    nested values that cost a read are callables, so they run only when selected."""

    def __init__(self, read: ReadModel) -> None:
        self.read = read

    async def run(self, info: Info, runID: str) -> dict[str, Any] | None:
        found = await self.read.run(runID)
        if found is None:
            return None
        return self._run_v2(found)

    def _run_v2(self, run: dict[str, Any]) -> dict[str, Any]:
        run_id = run["run_id"]
        status = _RUN_STATUS.get(run["status"], "RUNNING")
        ended = status != "RUNNING"

        async def trigger(info: Info) -> Any:
            return await self.runTrigger(info, run_id)

        async def event_name(info: Info) -> Any:
            return (await trigger(info))["eventName"]

        async def trigger_ids(info: Info) -> Any:
            return (await trigger(info))["IDs"]

        async def is_batch(info: Info) -> Any:
            return (await trigger(info))["isBatch"]

        async def trace(info: Info) -> dict[str, Any]:
            steps = await self.read.steps(run_id) or []
            return {
                "runID": run_id, "spanID": run_id, "traceID": run_id,
                "name": run["function_id"],
                "status": status,  # the run statuses are span statuses too
                "attempts": None,
                "duration": _duration(run["run_started_at"], run["ended_at"]),
                "outputID": _output_id(run_id) if ended else None,
                "queuedAt": run["run_started_at"], "startedAt": run["run_started_at"],
                "endedAt": run["ended_at"],
                "childrenSpans": [self._step_span(run_id, rec) for rec in steps],
                "stepOp": None, "stepID": None, "isRoot": True, "parentSpanID": None,
            }

        return {
            "id": run_id,
            "functionID": run["function_id"],
            "status": status,
            "output": _json(run["output"]) if ended else None,
            "queuedAt": run["run_started_at"],
            "startedAt": run["run_started_at"],
            "endedAt": run["ended_at"],
            "eventName": event_name,
            "triggerIDs": trigger_ids,
            "isBatch": is_batch,
            "trace": trace,
        }

    @staticmethod
    def _step_span(run_id: str, rec: dict[str, Any]) -> dict[str, Any]:
        hashed = str(rec.get("id") or "")
        memoized = rec.get("order") is not None  # in the run's step order: it has a memo
        return {
            "runID": run_id, "spanID": f"{run_id}:{hashed}", "traceID": run_id,
            "name": str(rec.get("name") or hashed),
            "status": _SPAN_STATUS.get(str(rec.get("status")), "RUNNING"),
            "attempts": rec.get("attempts"),
            "duration": _duration(rec.get("started_at"), rec.get("ended_at")),
            "outputID": _output_id(run_id, hashed) if memoized else None,
            "queuedAt": rec.get("started_at"), "startedAt": rec.get("started_at"),
            "endedAt": rec.get("ended_at"),
            "childrenSpans": [],
            "stepOp": _STEP_OP.get(str(rec.get("op") or "").lower()),
            "stepID": hashed, "isRoot": False, "parentSpanID": run_id,
        }

    async def runTrigger(self, info: Info, runID: str) -> dict[str, Any]:
        batch = await self.read.run_batch(runID)
        if batch is None:
            raise GraphQLError(f"run {runID} not found")
        first = batch[0] if batch else {}
        ts = first.get("ts") if isinstance(first, dict) else None
        timestamp = (datetime.datetime.fromtimestamp(ts / 1000, tz=datetime.UTC).isoformat()
                     if isinstance(ts, int) else None)
        cron = None
        if isinstance(first, dict) and first.get("name") == "inngest/scheduled.timer":
            cron = (first.get("data") or {}).get("cron")
        return {
            "eventName": first.get("name") if isinstance(first, dict) else None,
            "IDs": [e.get("id") for e in batch if isinstance(e, dict)],
            "payloads": [_json(e) for e in batch],
            "timestamp": timestamp,
            "isBatch": len(batch) > 1,
            "cron": cron,
        }

    async def runTraceSpanOutputByID(self, info: Info,
                                     outputID: str) -> dict[str, Any]:
        run_id, _, step_hash = outputID.partition(":")
        if not step_hash:
            run = await self.read.run(run_id)
            if run is None or run["status"] == "Running":
                raise GraphQLError(f"no output with id {outputID!r}")
            if run["status"] == "Completed":
                return {"input": None, "data": _json(run["output"]), "error": None}
            return {"input": None, "data": None, "error": _step_error(run["output"])}
        found, memo = await self.read.step_value(run_id, step_hash)
        if not found:
            raise GraphQLError(f"no output with id {outputID!r}")
        if isinstance(memo, dict) and set(memo) == {"error"}:
            return {"input": None, "data": None, "error": _step_error(memo["error"])}
        if isinstance(memo, dict) and set(memo) == {"data"}:
            return {"input": None, "data": _json(memo["data"]), "error": None}
        # unwrapped memos: a sleep (null) or the event that ended a wait
        return {"input": None, "data": None if memo is None else _json(memo), "error": None}

    async def event(self, info: Info, query: dict[str, Any]) -> Any:
        event_id = str(query["eventId"])
        found = await self.read.event(event_id)
        if found is None:
            return None
        read = self.read

        async def function_runs(info: Info) -> list[dict[str, Any]]:
            runs = await read.event_runs(event_id)
            return [{
                "id": r["run_id"], "functionID": r["function_id"], "eventID": event_id,
                "status": _RUN_STATUS.get(r["status"], "RUNNING"),
                "output": None if r["status"] == "Running" else _json(r["output"]),
                "startedAt": r["run_started_at"], "finishedAt": r["ended_at"],
            } for r in runs if r["status"] != "Skipped"]

        async def total_runs(info: Info) -> int:
            return len(await function_runs(info))

        return {
            "id": found["internal_id"],
            "externalID": found["event"].get("id"),
            "name": found["name"],
            "createdAt": found["received_at"],
            "payload": _json(found["data"]),
            "raw": _json(found["event"]),
            "totalRuns": total_runs,
            "functionRuns": function_runs,
        }


def _answer(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _request_error(message: str) -> Response:
    return _answer(400, {"errors": [{"message": message}]})


def router(read: ReadModel) -> APIRouter:
    routes = APIRouter()

    @routes.post(PATH)
    async def graphql_query(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return _request_error(f"body: malformed JSON: {exc}")
        if not isinstance(body, dict):
            return _request_error("body: must be an object with a 'query'")
        query, variables = body.get("query"), body.get("variables")
        operation = body.get("operationName")
        if not isinstance(query, str) or not query.strip():
            return _request_error("query: required, a GraphQL document")
        if variables is not None and not isinstance(variables, dict):
            return _request_error("variables: must be an object")
        if operation is not None and not isinstance(operation, str):
            return _request_error("operationName: must be a string")
        try:
            document = parse(query)
        except GraphQLError as exc:
            return _answer(400, {"errors": [exc.formatted]})
        problems = validate(SCHEMA, document)
        if problems:  # e.g. a field we do not serve: "Cannot query field 'x' on type 'Y'."
            return _answer(400, {"errors": [e.formatted for e in problems]})
        outcome = execute(SCHEMA, document, root_value=Root(read), variable_values=variables,
                          operation_name=operation)
        result: ExecutionResult = await outcome if isawaitable(outcome) else outcome  # type: ignore[misc]
        errors = [e.formatted for e in result.errors or []]
        if result.data is None and all(e.path is None for e in result.errors or []):
            # bad variables or operation name: nothing was executed
            return _answer(400, {"errors": errors})
        answer: dict[str, Any] = {"data": result.data}
        if errors:
            answer["errors"] = errors
        return _answer(200, answer)

    return routes
