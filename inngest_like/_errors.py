"""Errors users raise or catch, and the interrupts the engine uses for control flow.

    Exception
     └── Error                     base of every inngest_like error
          ├── NonRetriableError    raise to fail a step or run at once, no retries
          ├── RetryAfterError      raise to retry no sooner than `retry_after`
          ├── StepError            raised into the function when a step spent its retries
          ├── SendEventsError      the event API refused a send
          └── ConfigError          a function or client is declared wrongly

    BaseException
     └── _Interrupt                 ends a call with opcodes (private; user code
                                    catching Exception cannot swallow it)
"""

from __future__ import annotations

import datetime
from typing import Any

from . import wire


class Error(Exception):
    """Base class of every inngest_like error."""


class NonRetriableError(Error):
    """Fails the step (or the run, when raised outside a step) without retrying."""

    def __init__(self, message: str | None = None, cause: Any = None) -> None:
        super().__init__(message)
        self.message = message or ""
        self.cause = cause


class RetryAfterError(Error):
    """Retries the step no sooner than `retry_after` (seconds, timedelta or datetime)."""

    def __init__(
        self,
        message: str | None,
        retry_after: int | float | datetime.timedelta | datetime.datetime,
    ) -> None:
        super().__init__(message)
        self.message = message or ""
        if isinstance(retry_after, datetime.datetime):
            self.retry_after = retry_after
        else:
            seconds = (
                retry_after.total_seconds()
                if isinstance(retry_after, datetime.timedelta)
                else float(retry_after) / 1000.0  # official SDK: an int is milliseconds
            )
            self.retry_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
                seconds=seconds
            )

    def retry_after_header(self) -> str:
        return wire.rfc3339(self.retry_after)


class StepError(Error):
    """A step failed for good; carries the original error's name, message and stack."""

    def __init__(self, message: str, name: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.stack = stack


class SendEventsError(Error):
    """The event API answered with an error; `ids` holds ids of events accepted before it."""

    def __init__(self, message: str, ids: list[str]) -> None:
        super().__init__(message)
        self.ids = ids


class ConfigError(Error):
    """A client or function is declared wrongly."""


class _Interrupt(BaseException):
    """Ends the current call: the engine turns `ops` into a 206 answer."""

    def __init__(self, ops: list[dict[str, Any]], retry_after: str | None = None) -> None:
        super().__init__()
        self.ops = ops
        self.retry_after = retry_after


class StepUnexpectedError(Error):
    """The executor targeted one step but the function reached a different new step."""
