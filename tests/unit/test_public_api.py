"""Pins the SDK's public names: adding or removing one is a deliberate change."""

import inngest_like


def test_public_names() -> None:
    assert sorted(inngest_like.__all__) == [
        "Cancel", "ConfigError", "Context", "Error", "Event", "Function", "Group", "Inngest",
        "NonRetriableError", "RetryAfterError", "Saga", "SendEventsError", "Step", "StepError",
        "StepSync", "Timeouts", "TriggerCron", "TriggerEvent", "__version__",
    ]
    for name in inngest_like.__all__:
        assert hasattr(inngest_like, name)
