"""Timestamps as jobhook writes them: RFC 3339, UTC, millisecond precision, `Z` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def to_iso(moment: datetime) -> str:
    # isoformat is several times faster than strftime, and this runs for every event.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def utcnow_iso() -> str:
    return to_iso(datetime.now(UTC))


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp with an offset or `Z`; raises ValueError otherwise."""
    moment = datetime.fromisoformat(value.strip().replace("z", "Z").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a time zone offset (or Z) is required")
    return moment
