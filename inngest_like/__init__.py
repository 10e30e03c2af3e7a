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
from ._function import Cancel, Function, Timeouts, TriggerCron, TriggerEvent
from ._saga import Saga
from ._step import Step, StepSync
from ._version import VERSION

__version__ = VERSION

__all__ = [
    "Cancel",
    "ConfigError",
    "Context",
    "Error",
    "Event",
    "Function",
    "Group",
    "Inngest",
    "NonRetriableError",
    "RetryAfterError",
    "Saga",
    "SendEventsError",
    "Step",
    "StepError",
    "StepSync",
    "Timeouts",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
]
