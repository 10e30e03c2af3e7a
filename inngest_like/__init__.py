"""inngest_like: durable step functions for Python, wire-compatible with Inngest."""

from ._client import Inngest
from ._context import Context, Group
from ._errors import (
    ConfigError,
    Error,
    NonRetriableError,
    RetryAfterError,
    SendEventsError,
    StepError,
)
from ._event import Event
from ._function import (
    Batch,
    Budget,
    Cancel,
    Concurrency,
    Debounce,
    Function,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    Timeouts,
    TriggerCron,
    TriggerEvent,
)
from ._heartbeat import heartbeat, heartbeat_sync
from ._saga import Saga
from ._step import Step, StepSync
from ._usage import usage
from ._version import VERSION

__version__ = VERSION

__all__ = [
    "Batch",
    "Budget",
    "Cancel",
    "Concurrency",
    "ConfigError",
    "Context",
    "Debounce",
    "Error",
    "Event",
    "Function",
    "Group",
    "Inngest",
    "NonRetriableError",
    "Priority",
    "RateLimit",
    "RetryAfterError",
    "Saga",
    "SendEventsError",
    "Singleton",
    "Step",
    "StepError",
    "StepSync",
    "Throttle",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
    "heartbeat",
    "heartbeat_sync",
    "usage",
]
