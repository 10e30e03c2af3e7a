"""The event: what triggers runs, what `step.send_event` and `client.send` emit."""

from __future__ import annotations

from typing import Any

import pydantic


class Event(pydantic.BaseModel):
    """One event. `id` is optional: when set, it deduplicates runs (24 h per function)."""

    model_config = pydantic.ConfigDict(extra="allow")

    name: str
    data: dict[str, Any] = pydantic.Field(default_factory=dict)
    id: str = ""
    ts: int = 0
    user: dict[str, Any] = pydantic.Field(default_factory=dict)
    v: str | None = None

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "data": self.data}
        if self.id:
            body["id"] = self.id
        if self.ts:
            body["ts"] = self.ts
        if self.user:
            body["user"] = self.user
        if self.v is not None:
            body["v"] = self.v
        return body
