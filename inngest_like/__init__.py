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
from ._function import Function, TriggerCron, TriggerEvent
from ._step import Step, StepSync
from ._version import VERSION

__version__ = VERSION

__all__ = [
    "ConfigError",
    "Context",
    "Error",
    "Event",
    "Function",
    "Group",
    "Inngest",
    "NonRetriableError",
    "RetryAfterError",
    "SendEventsError",
    "Step",
    "StepError",
    "StepSync",
    "TriggerCron",
    "TriggerEvent",
    "__version__",
]
