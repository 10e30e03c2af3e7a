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
from ._saga import Saga
from ._step import Step, StepSync
from ._version import VERSION

__version__ = VERSION

__all__ = [
    "Batch",
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
]
