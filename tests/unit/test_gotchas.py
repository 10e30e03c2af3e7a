"""The protocol notes' gotchas (§11), one check each where a unit test can show it; the
others are exercised end to end by tests/compat/ (official SDKs) and tests/cases/."""

from __future__ import annotations

import orjson

from executor.driver import Completed, Ops, parse_response
from executor.durations import parse_ms
from executor.queue import QueueItem
from executor.registry import parse_sync
from executor.state import CallState, call_body
from inngest_like import signing

SDK = {"x-inngest-sdk": "inngest-py:v0.5.18"}


def _state(**run: bytes) -> CallState:
    event = b'{"name":"a/b","data":{},"id":"01J","ts":1718121495000,"user":{}}'
    fields = {b"event": event, b"events": b"[" + event + b"]", b"version": b"-1", **run}
    return CallState(fields, {b"h1": b'{"data":1}'}, [b"h1"], 0)


def test_1_signatures_cover_the_jcs_canonical_body() -> None:
    body = b'{"b":1,  "a":[1, 2]}'
    assert signing.canonical(body) == b'{"a":[1,2],"b":1}'
    header = signing.sign(signing.canonical(body), "signkey-test-ab", now_s=5)
    signing.verify(body, header, ["signkey-test-ab"], now_s=5)  # the SDK re-canonicalises


def test_2_call_body_has_use_api_twice_integer_ts_stack_events_and_version() -> None:
    item = QueueItem(id="r:1", run_id="r", fn_id="app-fn")
    body = orjson.loads(call_body(item, _state()))
    assert body["use_api"] is False and body["ctx"]["use_api"] is False
    assert isinstance(body["event"]["ts"], int)
    assert body["ctx"]["stack"] == {"stack": ["h1"], "current": 1}
    assert body["events"] == [body["event"]] and body["version"] == -1
    assert body["steps"] == {"h1": {"data": 1}}


def test_3_fn_id_is_sent_because_checkpointing_is_implemented() -> None:
    item = QueueItem(id="r:1", run_id="r", fn_id="app-fn")
    assert orjson.loads(call_body(item, _state()))["ctx"]["fn_id"] == "app-fn"


def test_4_appname_spellings_and_day_week_durations() -> None:
    for key in ("appName", "appname"):
        app_id, _, _ = parse_sync({key: "a", "url": "http://x", "functions": []})
        assert app_id == "a"
    assert parse_ms("1d") == 86_400_000 and parse_ms("1w") == 7 * 86_400_000
    assert parse_ms("1h30m") == 5_400_000


def test_7_2xx_without_sdk_header_fails_and_201_streaming_is_unwrapped() -> None:
    assert not isinstance(parse_response(200, {}, b"1"), Completed)
    envelope = orjson.dumps({"status": 200, "headers": SDK, "body": "42"})
    streamed = parse_response(201, SDK, b"   " + envelope)
    assert isinstance(streamed, Completed) and streamed.output == 42


def test_8_no_retry_header_is_honoured_whatever_the_status() -> None:
    for status in (400, 500):
        answer = parse_response(status, {**SDK, "x-inngest-no-retry": "true"}, b"{}")
        assert not isinstance(answer, Completed | Ops) and not answer.retriable


def test_9_empty_op_list_and_run_complete_are_opcodes() -> None:
    empty = parse_response(206, SDK, b"[]")
    assert isinstance(empty, Ops) and empty.ops == []
    done = parse_response(206, SDK, b'[{"op":"RunComplete","id":"x","data":1}]')
    assert isinstance(done, Ops) and done.ops[0]["op"] == "RunComplete"


def test_10_bearer_tokens_with_or_without_prefix() -> None:
    key = "signkey-prod-123abc"
    assert signing.bearer_matches(signing.bearer(key), [key])
    assert signing.bearer_matches("signkey-prod-" + signing.bearer(key), [key])


def test_retry_after_keeps_milliseconds() -> None:
    """A Retry-After date with milliseconds (the SDK sends RFC 3339 with ms) is honoured to
    the millisecond; whole seconds work too."""
    from executor import backoff, times

    stamp = "2027-01-15T08:00:02.750Z"
    target = times.parse_ms(stamp)
    assert target % 1000 == 750
    assert backoff.retry_after_ms(stamp, target - 2_000) == target
    assert backoff.retry_after_ms("3", target) == target + 3_000
