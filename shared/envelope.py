"""The envelope every event travels in: {id, type, version, occurred_at, producer, correlation_id, data}."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from shared import clock


class MalformedEnvelope(ValueError):
    """The message is not an envelope we can read: it goes to the dead-letter queue."""


@dataclass(frozen=True)
class Envelope:
    type: str
    data: dict[str, Any]
    producer: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: int = 1
    occurred_at: str = field(default_factory=lambda: clock.iso(clock.now()))
    correlation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # asdict's order, without its deep copy of data (a copy per event, on every hot path)
        return {"type": self.type, "data": self.data, "producer": self.producer, "id": self.id,
                "version": self.version, "occurred_at": self.occurred_at, "correlation_id": self.correlation_id}

    @classmethod
    def from_dict(cls, body: Any) -> "Envelope":
        if not isinstance(body, dict):
            raise MalformedEnvelope(f"body is {type(body).__name__}, not an object")
        missing = {"id", "type", "data", "producer"} - body.keys()
        if missing:
            raise MalformedEnvelope(f"missing {sorted(missing)}")
        if not isinstance(body["data"], dict) or not isinstance(body["type"], str):
            raise MalformedEnvelope("data must be an object and type a string")
        try:
            version = int(body.get("version", 1))
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedEnvelope("version must be a whole number") from exc
        return cls(
            id=str(body["id"]),
            type=body["type"],
            version=version,
            occurred_at=str(body.get("occurred_at", "")),
            producer=str(body["producer"]),
            correlation_id=body.get("correlation_id"),
            data=body["data"],
        )
