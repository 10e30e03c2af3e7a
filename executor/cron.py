"""Cron schedules as the protocol writes them: 5-field cron with an optional `TZ=` /
`CRON_TZ=` prefix (through the maintained `croniter`), plus robfig's `@every <duration>`."""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo

from croniter import croniter

from . import durations


def schedule_id(function_id: str, source: str) -> str:
    """One function's one cron trigger: what its cron state (`keys.cron_last`) is kept under,
    so changing a function's schedule starts the new one afresh."""
    return f"{function_id}|{source}"


@dataclasses.dataclass(frozen=True)
class Schedule:
    source: str
    expression: str
    tz: datetime.tzinfo
    every_ms: int | None

    @classmethod
    def parse(cls, source: str) -> Schedule:
        text = source.strip()
        tz: datetime.tzinfo = datetime.UTC
        if text.startswith(("TZ=", "CRON_TZ=")):
            prefix, _, text = text.partition(" ")
            name = prefix.split("=", 1)[1]
            try:
                tz = zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r}") from None
            text = text.strip()
        if text.startswith("@every "):
            every = durations.parse_ms(text.removeprefix("@every "))
            if every < 1000:
                raise ValueError("@every needs at least 1s")
            return cls(source, text, tz, every)
        if not croniter.is_valid(text) or len(text.split()) not in (1, 5):
            raise ValueError(f"invalid cron expression {text!r} (5 fields: min hour day month weekday)")
        return cls(source, text, tz, None)

    def next_after(self, after_ms: int) -> int:
        """The first tick strictly after `after_ms`."""
        if self.every_ms:
            return (after_ms // self.every_ms + 1) * self.every_ms
        start = datetime.datetime.fromtimestamp(after_ms / 1000, tz=self.tz)
        nxt = croniter(self.expression, start).get_next(datetime.datetime)
        return int(nxt.timestamp() * 1000)
