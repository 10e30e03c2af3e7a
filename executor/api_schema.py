"""What the API's request bodies look like, in the OpenAPI document (`/openapi.json`).

The routes read raw bodies (validation lives in `events.py`, `registry.py`, `flow.py`,
`control.py`, with messages naming the field), so FastAPI cannot infer these; they are
declared here for API clients and for the property-based fuzz test
(tests/fuzz/test_api_fuzz.py), which generates bodies from them, valid and not.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
OBJECT: dict[str, Any] = {"type": "object"}

EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 512},
        "data": OBJECT,
        "id": STRING,
        "ts": {"type": "integer"},
        "user": OBJECT,
        "v": STRING,
    },
}

EVENTS: dict[str, Any] = {"anyOf": [EVENT, {"type": "array", "items": EVENT, "minItems": 1}]}

# Go-style durations (`90s`, `1h30m`, `2d`); seconds as a number are accepted too
DURATION_TEXT: dict[str, Any] = {"type": "string",
                                 "pattern": r"^([0-9]{1,30}(\.[0-9]{1,3})?(ns|us|ms|s|m|h|d|w)){1,3}$"}
_DURATION: dict[str, Any] = {"anyOf": [DURATION_TEXT, STRING, {"type": "integer"}]}
CRON: dict[str, Any] = {"anyOf": [
    {"type": "string", "pattern": r"^(TZ=Europe/Paris )?@every [0-9]{1,400}(ms|s|m|h|d)$"},
    {"type": "string", "pattern": r"^([0-9*/,-]{1,5} ){4}[0-9*/,-]{1,5}$"},
    STRING,
]}

TRIGGER: dict[str, Any] = {
    "type": "object",
    "properties": {"event": STRING, "expression": STRING, "cron": CRON},
}

FUNCTION: dict[str, Any] = {
    "type": "object",
    "required": ["id", "triggers", "steps"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "name": STRING,
        "triggers": {"type": "array", "items": TRIGGER, "minItems": 1},
        "steps": {"type": "object", "properties": {"step": {
            "type": "object",
            "properties": {
                "id": STRING,
                "runtime": {"type": "object", "properties": {"type": STRING, "url": STRING}},
                "retries": {"type": "object", "properties": {"attempts": {"type": "integer"}}},
            }}}},
        "cancel": {"type": "array", "items": {"type": "object", "properties": {
            "event": STRING, "if": STRING, "timeout": _DURATION}}},
        "concurrency": {"type": "array", "items": {"type": "object", "properties": {
            "limit": {"type": "integer"}, "key": STRING, "scope": STRING}}},
        "throttle": {"type": "object", "properties": {
            "limit": {"type": "integer"}, "period": _DURATION, "burst": {"type": "integer"},
            "key": STRING}},
        "rateLimit": {"type": "object", "properties": {
            "limit": {"type": "integer"}, "period": _DURATION, "key": STRING}},
        "debounce": {"type": "object", "properties": {
            "period": _DURATION, "key": STRING, "timeout": _DURATION}},
        "batchEvents": {"type": "object", "properties": {
            "maxSize": {"type": "integer"}, "timeout": _DURATION, "key": STRING, "if": STRING}},
        "priority": {"type": "object", "properties": {"run": {"anyOf": [
            {"type": "string", "pattern": r"^event\.data\.[a-z]{1,3} (\*|/|\+|-) [0-9]{1,3}(\.0|e308)?$"},
            STRING]}}},
        "singleton": {"type": "object", "properties": {"mode": STRING, "key": STRING}},
        "idempotency": STRING,
        "timeouts": {"type": "object", "properties": {"start": _DURATION,
                                                      "finish": _DURATION}},
    },
}

REGISTRATION: dict[str, Any] = {
    "type": "object",
    "required": ["appName", "url", "functions"],
    "properties": {
        "appName": {"type": "string", "minLength": 1},
        "url": STRING,
        "sdk": STRING,
        "framework": STRING,
        "v": STRING,
        "functions": {"type": "array", "items": FUNCTION},
    },
}

CANCELLATION: dict[str, Any] = {
    "type": "object",
    "required": ["function_id"],
    "properties": {
        "function_id": {"type": "string", "minLength": 1},
        "started_after": {"anyOf": [STRING, {"type": "integer"}]},
        "started_before": {"anyOf": [STRING, {"type": "integer"}]},
        "if": STRING,
    },
}

CHECKPOINT: dict[str, Any] = {
    "type": "object",
    "required": ["steps"],
    "properties": {"steps": {"type": "array", "items": {
        "type": "object", "required": ["id", "op"],
        "properties": {"id": STRING, "op": STRING, "displayName": STRING, "data": {}}}}},
}

CHECKPOINTS: dict[str, Any] = {
    "type": "object",
    "required": ["checkpoints"],
    "properties": {"checkpoints": {"type": "array", "items": {
        "type": "object", "required": ["run_id", "steps"],
        "properties": {"run_id": STRING, "qi_id": STRING, "generation_id": STRING,
                       "traceparent": STRING,
                       "steps": CHECKPOINT["properties"]["steps"]}}}},
}

EVENT_KEY: dict[str, Any] = {
    "type": "object",
    "required": ["key"],
    "properties": {"key": {"type": "string", "minLength": 16}, "name": STRING},
}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body has `schema`."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}
