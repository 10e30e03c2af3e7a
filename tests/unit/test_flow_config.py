"""Flow-control configs are validated at sync, with messages naming function and field."""

from __future__ import annotations

from typing import Any

import pytest

import inngest_like as inngest
from executor.registry import SyncError, parse_function


def _config(**options: Any) -> dict[str, Any]:
    return {"id": "app-fn", "name": "fn", "triggers": [{"event": "a/b"}],
            "steps": {"step": {"runtime": {"url": "http://127.0.0.1:1/api/inngest"}}},
            **options}


@pytest.mark.parametrize(("options", "field", "problem"), [
    ({"concurrency": [{"limit": 0}]}, "concurrency[0].limit", ">= 1"),
    ({"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]}, "concurrency", "at most 2"),
    ({"concurrency": [{"limit": 1, "key": "event.data.("}]}, "concurrency[0].key", "CEL"),
    ({"throttle": {"limit": 1, "period": "soon"}}, "throttle.period", "duration"),
    ({"rateLimit": {"limit": -1, "period": "1m"}}, "rateLimit.limit", ">= 1"),
    ({"debounce": {"period": "1x"}}, "debounce.period", "duration"),
    ({"batchEvents": {"maxSize": 500, "timeout": "1s"}}, "batchEvents.maxSize", "at most 100"),
    ({"priority": {"run": "event.data.vip ?"}}, "priority.run", "CEL"),
    ({"singleton": {"mode": "queue"}}, "singleton.mode", "skip or cancel"),
    ({"idempotency": "event.data.id =="}, "idempotency", "CEL"),
])
def test_bad_flow_config_rejected_naming_field(options: dict[str, Any], field: str,
                                               problem: str) -> None:
    with pytest.raises(SyncError) as caught:
        parse_function(_config(**options), "app", 0)
    message = str(caught.value)
    assert message.startswith(f"function 'app-fn': {field}: "), message
    assert problem in message


def test_sdk_options_render_to_the_protocol_shapes() -> None:
    client = inngest.Inngest(app_id="app", is_production=False)

    @client.create_function(
        fn_id="fn", trigger=inngest.TriggerEvent(event="a/b"),
        concurrency=[inngest.Concurrency(limit=5, key="event.data.user_id", scope="fn")],
        throttle=inngest.Throttle(limit=1, period=5, burst=1),
        rate_limit=inngest.RateLimit(limit=10, period=60, key="event.data.user_id"),
        debounce=inngest.Debounce(period=5, timeout=60),
        batch_events=inngest.Batch(max_size=100, timeout=5, if_exp="event.data.ok"),
        priority=inngest.Priority(run="event.data.vip ? 120 : 0"),
        singleton=inngest.Singleton(mode="skip", key="event.data.user_id"),
        idempotency="event.data.order_id",
    )
    async def fn(ctx: inngest.Context, step: inngest.Step) -> None:
        return None

    config = fn.to_config("http://h/api/inngest")
    assert config["concurrency"] == [{"limit": 5, "key": "event.data.user_id", "scope": "fn"}]
    assert config["throttle"] == {"limit": 1, "period": "5s", "burst": 1}
    assert config["rateLimit"] == {"limit": 10, "period": "60s", "key": "event.data.user_id"}
    assert config["debounce"] == {"period": "5s", "timeout": "60s"}
    assert config["batchEvents"] == {"maxSize": 100, "timeout": "5s", "if": "event.data.ok"}
    assert config["priority"] == {"run": "event.data.vip ? 120 : 0"}
    assert config["singleton"] == {"mode": "skip", "key": "event.data.user_id"}
    assert config["idempotency"] == "event.data.order_id"
    parsed = parse_function(config, "app", 0)  # and the executor accepts them
    assert parsed.flow.concurrency[0].limit == 5
