"""Issue 13: traces with real processes and a real OTLP/HTTP receiver started by the test.
The executor (configured only by the standard OTEL_* variables) exports one trace per run:
the run's root span, a span per step attempt (retries included) under it, and the steps the
SDK checkpointed within a call under that call's span; the app, tracing
the standard way too, exports the span its step body made, nested under that attempt's
span. The run page shows the trace id."""

from __future__ import annotations

import dataclasses
import http.server
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ulid import ULID

from ..conftest import Stack, _keep_logs, start_stack
from ..procs import free_port, wait_for

pytestmark = pytest.mark.real


@dataclasses.dataclass
class Span:
    service: str
    trace_id: str
    span_id: str
    parent: str
    name: str
    attributes: dict[str, Any]
    error: str


class Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies, spans kept in memory."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    attributes = {a.key: getattr(a.value, a.value.WhichOneof("value"))
                                  for a in s.attributes}
                    with self.lock:
                        self.spans.append(Span(service, s.trace_id.hex(), s.span_id.hex(),
                                               s.parent_span_id.hex(), s.name, attributes,
                                               s.status.message))

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Receiver]]:
    receiver = Receiver()
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    directory: pathlib.Path = tmp_path_factory.mktemp("traced")
    stack = start_stack(directory, "tests.apps.agent_app:app", app_env=otel,
                        executor_env=otel)
    try:
        stack.executor.wait_synced("agent-traced")
        yield stack, receiver
    finally:
        stack.stop()
        receiver.stop()
        _keep_logs(directory)


def test_spans_arrive_with_the_right_parents(traced: tuple[Stack, Receiver]) -> None:
    stack, receiver = traced
    ex = stack.executor
    run = ex.wait_run(ex.send("agent/traced"), timeout=30)
    run_id = run["run_id"]
    trace_id = ULID.from_str(run_id).bytes.hex()  # the trace id is the run id
    assert run["trace_id"] == trace_id

    def complete() -> list[Span] | None:
        spans = receiver.of_trace(trace_id)
        names = [s.name for s in spans]
        if "run agent-traced" in names and names.count("vector-search") == 2:
            return spans
        return None

    spans = wait_for(complete, 20, "the run's spans at the receiver")
    (root,) = [s for s in spans if s.name == "run agent-traced"]
    assert root.parent == "" and root.service == "inngest-like-executor"
    assert root.attributes["inngest.status"] == "Completed"
    assert root.attributes["inngest.cost_usd"] == pytest.approx(0.006)

    steps = [s for s in spans if s.service == "inngest-like-executor" and s is not root]
    calls = {s.span_id: s for s in steps if "inngest.call_id" in s.attributes}
    assert all(s.parent == root.span_id for s in calls.values())  # a call: one attempt
    by_attempt = {(s.name, s.attributes["inngest.attempt"]): s for s in steps}
    failed, ok = by_attempt[("step search", 1)], by_attempt[("step search", 2)]
    assert failed.attributes["inngest.status"] == "Retrying"
    assert failed.attributes["inngest.error"] == "index warming up"
    assert failed.error == "index warming up"
    assert ok.attributes["inngest.status"] == "Completed"
    assert ok.attributes["inngest.function"] == "agent-traced"
    assert ok.attributes["gen_ai.usage.input_tokens"] == 100
    assert ok.attributes["inngest.cost_usd"] == pytest.approx(0.003)
    # the SDK ran "summarize" and returned in one call, sending the step with the function's
    # end: its span is a child of that call's span, and covers the step's body only
    summarize, finish = by_attempt[("step summarize", 1)], by_attempt[("finish", 1)]
    assert summarize.attributes["inngest.status"] == "Completed"
    assert summarize.parent == finish.span_id and finish.parent == root.span_id

    # the user's own span, made inside the step body, nests under that attempt's span
    user = {s.attributes["attempt"]: s for s in spans if s.name == "vector-search"}
    assert {s.service for s in user.values()} == {"agent-app"}
    assert user[0].parent == failed.span_id and user[1].parent == ok.span_id

    page = httpx.get(f"{ex.url}/runs/{run_id}", timeout=10).text
    assert f'<strong class="mono" id="trace-id">{trace_id}</strong>' in page
