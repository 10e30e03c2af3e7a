"""How the executor reads an SDK's HTTP answer (protocol §5, §6) and when it retries (§10)."""

from __future__ import annotations

import datetime

import orjson
import pytest

from executor import backoff
from executor.driver import CallError, Completed, Ops, parse_response

SDK = {"x-inngest-sdk": "inngest-py:v0.5.18", "content-type": "application/json"}


def call_error(status: int, headers: dict[str, str], body: bytes) -> CallError:
    outcome = parse_response(status, headers, body)
    assert isinstance(outcome, CallError), outcome
    return outcome


def ops(status: int, headers: dict[str, str], body: bytes) -> Ops:
    outcome = parse_response(status, headers, body)
    assert isinstance(outcome, Ops), outcome
    return outcome


# -- 200: the function finished ---------------------------------------------------------------

def test_200_with_sdk_header_is_completed_with_the_output() -> None:
    outcome = parse_response(200, SDK, b'{"total": 45, "items": [1, 2]}')
    assert outcome == Completed({"total": 45, "items": [1, 2]})


@pytest.mark.parametrize(("body", "output"), [(b"null", None), (b"", None), (b"41", 41),
                                               (b'"done"', "done")])
def test_200_scalar_and_empty_outputs(body: bytes, output: object) -> None:
    assert parse_response(200, SDK, body) == Completed(output)


def test_200_non_json_is_a_readable_call_error() -> None:
    error = call_error(200, SDK, b"<html>Internal proxy page</html>")
    assert "200" in error.message
    assert "not JSON" in error.message
    assert error.error["message"] == error.message
    assert error.error["name"] == "Error"
    assert error.retriable is True
    assert error.status == 200


@pytest.mark.parametrize("status", [200, 201, 204, 206])
def test_2xx_without_sdk_header_is_an_error(status: int) -> None:
    body = b'{"status": 200, "headers": {}, "body": "1"}' if status == 201 else b"[]"
    error = call_error(status, {"content-type": "application/json"}, body)
    assert "X-Inngest-SDK" in error.message
    assert "not an Inngest SDK" in error.message
    assert error.retriable is True


# -- 206: step work ---------------------------------------------------------------------------

def test_206_list_of_ops() -> None:
    body = orjson.dumps([{"op": "StepRun", "id": "abc", "displayName": "a", "data": 1}])
    got = ops(206, {**SDK, "x-inngest-req-version": "2"}, body)
    assert got.ops == [{"op": "StepRun", "id": "abc", "displayName": "a", "data": 1}]
    assert got.version == 2
    assert got.no_retry is False
    assert got.retry_after is None


def test_206_single_object_is_accepted_as_one_op() -> None:
    got = ops(206, SDK, b'{"op": "Sleep", "id": "s1", "name": "1s"}')
    assert got.ops == [{"op": "Sleep", "id": "s1", "name": "1s"}]
    assert got.version is None


@pytest.mark.parametrize("body", [b"[]", b""])
def test_206_empty_list_means_nothing_to_do(body: bytes) -> None:
    assert ops(206, SDK, body).ops == []


def test_206_ops_are_case_insensitive() -> None:
    assert ops(206, SDK, b'[{"op": "steprun", "id": "x"}, {"op": "STEPPLANNED", "id": "y"}]').ops


def test_206_unknown_opcode_names_the_op() -> None:
    body = b'[{"op": "StepRun", "id": "a"}, {"op": "TeleportStep", "id": "b"}]'
    error = call_error(206, SDK, body)
    assert "TeleportStep" in error.message
    assert "unknown op" in error.message
    assert "opcode 1" in error.message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[{]", "not JSON"),
        (b'"StepRun"', "neither an opcode list nor an opcode"),
        (b'[{"id": "a"}]', "string 'op'"),
        (b'[{"op": 7}]', "string 'op'"),
        (b'["StepRun"]', "string 'op'"),
        (b'[{"op": "StepRun", "id": 12}]', "'id' must be a non-empty string"),
    ],
)
def test_206_malformed_bodies(body: bytes, words: str) -> None:
    assert words in call_error(206, SDK, body).message


def test_206_carries_retry_after_and_no_retry() -> None:
    got = ops(206, {**SDK, "retry-after": "5", "x-inngest-no-retry": "true"},
              b'[{"op": "StepError", "id": "a", "error": {"name": "E", "message": "m"}}]')
    assert got.retry_after == "5"
    assert got.no_retry is True


# -- errors -----------------------------------------------------------------------------------

def test_500_with_no_retry_header_is_not_retriable() -> None:
    body = orjson.dumps({"code": "non_retriable_error", "name": "NonRetriableError",
                         "message": "card declined", "stack": "Traceback..."})
    error = call_error(500, {**SDK, "x-inngest-no-retry": "true"}, body)
    assert error.retriable is False
    assert error.message == "card declined"


def test_no_retry_false_and_absent_are_retriable() -> None:
    body = b'{"name": "Error", "message": "boom"}'
    assert call_error(500, {**SDK, "x-inngest-no-retry": "false"}, body).retriable is True
    assert call_error(500, SDK, body).retriable is True


def test_400_with_no_retry_header_from_js_is_not_retriable() -> None:
    error = call_error(400, {**SDK, "x-inngest-no-retry": "true"},
                       b'{"name": "NonRetriableError", "message": "bad input"}')
    assert error.retriable is False
    assert error.status == 400


def test_500_sdk_error_body_is_carried() -> None:
    body = orjson.dumps({"code": "unknown", "name": "KeyError", "message": "'missing field'",
                         "stack": "Traceback (most recent call last): ..."})
    error = call_error(500, SDK, body)
    assert error.error["name"] == "KeyError"
    assert error.error["message"] == "'missing field'"
    assert error.error["stack"].startswith("Traceback")
    assert error.error["error"] == "invalid status code: 500"
    assert error.message == "'missing field'"
    assert error.status == 500


def test_500_sdk_error_body_is_kept_as_sent_for_the_run_output() -> None:
    sent = {"code": "step_unexpected", "name": "StepUnexpectedError",
            "message": 'found step "x" when targeting a different step', "stack": None}
    error = call_error(500, {**SDK, "x-inngest-no-retry": "true"}, orjson.dumps(sent))
    assert error.body == sent  # every field, and the null stack stays null
    assert error.error == {"error": "invalid status code: 500", "name": "StepUnexpectedError",
                           "message": sent["message"], "stack": ""}  # the end events' form


def test_500_without_sdk_header_is_an_infra_error_with_the_body_text() -> None:
    error = call_error(502, {}, b"Bad Gateway from nginx")
    assert error.error["error"] == "invalid status code: 502"
    assert error.error["name"] == "Error"
    assert "Bad Gateway from nginx" in error.message
    assert error.retriable is True
    assert error.body is None  # not an SDK's body: the run's output is the normalized error


def test_error_body_text_is_truncated() -> None:
    error = call_error(500, {}, b"x" * 10_000)
    assert len(error.message) < 600


def test_retry_after_is_passed_through_on_errors() -> None:
    error = call_error(500, {**SDK, "retry-after": "2025-06-11T16:58:15.000Z"},
                       b'{"name": "RetryAfterError", "message": "429"}')
    assert error.retry_after == "2025-06-11T16:58:15.000Z"
    assert error.retriable is True
    assert call_error(500, SDK, b"{}").retry_after is None


# -- 201: streaming envelope ------------------------------------------------------------------

def test_201_streaming_envelope_uses_the_inner_answer() -> None:
    inner = {"status": 200, "headers": {"X-Inngest-SDK": "inngest-py:v0.5.18"},
             "body": orjson.dumps({"done": True}).decode()}
    body = b"   " + b" " * 20 + orjson.dumps(inner)
    assert parse_response(201, {}, body) == Completed({"done": True})


def test_201_envelope_with_inner_206_and_object_body() -> None:
    inner = {"status": 206, "headers": {"X-Inngest-SDK": "js", "X-Inngest-Req-Version": "1"},
             "body": [{"op": "StepRun", "id": "a", "data": 3}]}
    got = ops(201, SDK, b"  " + orjson.dumps(inner))
    assert got.ops == [{"op": "StepRun", "id": "a", "data": 3}]
    assert got.version == 1


def test_201_envelope_with_inner_500_no_retry() -> None:
    inner = {"status": 500, "headers": {"X-Inngest-No-Retry": "true"},
             "body": orjson.dumps({"name": "NonRetriableError", "message": "stop"}).decode()}
    error = call_error(201, SDK, b" " + orjson.dumps(inner))
    assert error.retriable is False
    assert error.status == 500
    assert error.error["message"] == "stop"


@pytest.mark.parametrize("body", [b"   ", b"  {not json", b'  {"headers": {}}', b"  [1, 2]"])
def test_201_malformed_envelope(body: bytes) -> None:
    error = call_error(201, SDK, body)
    assert "malformed streaming response" in error.message


# -- backoff ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("failures", "base_s"),
    [(0, 15), (1, 30), (2, 60), (3, 120), (4, 300), (5, 600), (6, 1200), (7, 2400),
     (8, 3600), (9, 7200), (10, 7200), (50, 7200)],
)
def test_backoff_table_with_jitter(failures: int, base_s: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff.random, "random", lambda: 0.0)
    assert backoff.delay_ms(failures) == base_s * 1000
    monkeypatch.setattr(backoff.random, "random", lambda: 0.999999)
    top = backoff.delay_ms(failures)
    assert base_s * 1000 < top <= (base_s + 30) * 1000
    assert top > (base_s + 29) * 1000


def test_backoff_jitter_really_varies() -> None:
    delays = [backoff.delay_ms(0) for _ in range(200)]
    assert all(15_000 <= d <= 45_000 for d in delays)
    assert len(set(delays)) > 50
    assert max(delays) - min(delays) > 10_000


@pytest.mark.parametrize("failures", [0, 3, 20])
def test_flat_retry_interval(failures: int) -> None:
    assert backoff.delay_ms(failures, 0.2) == 200
    assert backoff.delay_ms(failures, 3) == 3000


NOW = 1_750_000_000_000


@pytest.mark.parametrize(
    ("value", "due"),
    [
        ("5", NOW + 5_000),
        ("  7 ", NOW + 7_000),
        ("0", NOW + 1_000),  # clamped up to 1 s
        ("1", NOW + 1_000),
        ("86400", NOW + 86_400_000),
        ("9999999", NOW + 86_400_000),  # clamped down to 24 h
    ],
)
def test_retry_after_seconds(value: str, due: int) -> None:
    assert backoff.retry_after_ms(value, NOW) == due


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.mark.parametrize(
    ("offset_ms", "expected_offset_ms"),
    [
        (10_000, 10_000),
        (2_500, 2_500),
        (-60_000, 1_000),  # in the past: clamped to 1 s
        (200, 1_000),
        (3 * 86_400_000, 86_400_000),  # three days: clamped to 24 h
    ],
)
def test_retry_after_iso_date_clamped(offset_ms: int, expected_offset_ms: int) -> None:
    assert backoff.retry_after_ms(_iso(NOW + offset_ms), NOW) == NOW + expected_offset_ms


def test_retry_after_http_date_and_naive_iso() -> None:
    moment = datetime.datetime.fromtimestamp((NOW + 30_000) / 1000, tz=datetime.UTC)
    http_date = moment.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert backoff.retry_after_ms(http_date, NOW) == NOW + 30_000
    naive = moment.replace(tzinfo=None).isoformat()
    assert backoff.retry_after_ms(naive, NOW) == NOW + 30_000


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_retry_after_unreadable_is_none(value: str | None) -> None:
    assert backoff.retry_after_ms(value, NOW) is None


@pytest.mark.parametrize(("body", "problem"), [
    (b'[{"op": "StepError", "id": "h", "error": "boom"}]', "'error' must be an object"),
    (b'[{"op": "WaitForEvent", "name": "a/b"}]', "'id' must be a non-empty string"),
    (b'[{"op": "Sleep", "id": "h", "opts": "1s"}]', "'opts' must be an object"),
    (b'[{"op": "StepRun", "data": 1}]', "'id' must be a non-empty string"),
    (b'[{"op": "WaitForEvent", "id": "h", "opts": {"timeout": "1s"}}]', "'opts.event'"),
    (b'[{"op": "InvokeFunction", "id": "h", "opts": {}}]', "'opts.function_id'"),
    (b'[{"op": "InvokeFunction", "id": "h", "opts": {"function_id": "f", "payload": 1}}]',
     "'opts.payload' must be an object"),
    (b'[{"op": "StepPlanned", "id": "a"}, {"op": "InvokeFunction", "id": "h", "opts": '
     b'{"function_id": "f", "payload": {"data": [1]}}}]', "'opts.payload.data'"),
])
def test_206_op_shapes_the_worker_relies_on(body: bytes, problem: str) -> None:
    """Ops the worker could not act on fail the attempt here, with a readable message
    (they used to raise inside the worker, or loop on a StepRun without an id)."""
    outcome = parse_response(206, {"x-inngest-sdk": "inngest-py:v0.5.18"}, body)
    assert isinstance(outcome, CallError) and problem in outcome.message


def test_a_malformed_version_header_is_ignored() -> None:
    outcome = parse_response(206, {"x-inngest-sdk": "py", "x-inngest-req-version": "--1"},
                             b'[{"op": "StepRun", "id": "h", "data": 1}]')
    assert isinstance(outcome, Ops) and outcome.version is None
