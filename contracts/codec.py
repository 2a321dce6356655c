"""Encoding events to Kafka record values and decoding them back, with classified failures.

``decode`` never raises anything but :class:`EventDecodeError`, whose ``reason`` is a short,
stable code (``not_json``, ``too_large``, ``unknown_event_type``, ``unsupported_schema_version``,
``invalid``) that dead-letter records and metrics carry, plus a human-readable ``detail``.
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import ValidationError

from contracts.events import EVENT_TYPES, Event

#: records larger than this are rejected before parsing (Kafka's default max message is 1 MiB)
MAX_EVENT_BYTES = 1024 * 1024

DecodeReason = Literal[
    "not_json", "too_large", "unknown_event_type", "unsupported_schema_version", "invalid"
]


class EventDecodeError(ValueError):
    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def encode(event: Event) -> bytes:
    """The wire form of an event: compact UTF-8 JSON of the envelope."""
    return event.model_dump_json().encode()


def decode(raw: bytes | bytearray | memoryview | None) -> Event:
    """Parse and validate one record value into its event class, or raise EventDecodeError."""
    if raw is None:
        raise EventDecodeError("invalid", "record has no value (tombstone)")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventDecodeError("too_large", f"{len(raw)} bytes > {MAX_EVENT_BYTES}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError("not_json", str(exc)) from None
    return decode_obj(data)


def decode_obj(data: object) -> Event:
    """Validate an already-parsed JSON object (used by tools reading JSON lines)."""
    if not isinstance(data, dict):
        raise EventDecodeError("invalid", f"expected a JSON object, got {type(data).__name__}")
    event_type = data.get("event_type")
    cls = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if cls is None:
        raise EventDecodeError("unknown_event_type", f"event_type={event_type!r}")
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > cls.SCHEMA_VERSION:
        raise EventDecodeError(
            "unsupported_schema_version",
            f"{event_type} v{version} is newer than the v{cls.SCHEMA_VERSION} this code reads",
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise EventDecodeError("invalid", _summarise(exc)) from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
