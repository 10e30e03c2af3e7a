"""Pins the SDK's public names: adding or removing one is a deliberate change."""

import inngest_like


def test_public_names() -> None:
    assert sorted(inngest_like.__all__) == [
        "Batch", "Budget", "Cancel", "Concurrency", "ConfigError", "Context", "Debounce", "Error", "Event", "Function", "Group", "Inngest", "NonRetriableError", "Priority", "RateLimit", "RetryAfterError", "Saga", "SendEventsError", "Singleton", "Step", "StepError", "StepSync", "Throttle", "Timeouts", "TriggerCron", "TriggerEvent", "__version__", "heartbeat", "heartbeat_sync", "usage",
    ]
    for name in inngest_like.__all__:
        assert hasattr(inngest_like, name)
