"""The submission queue's admission rule, decided here once for both stores: a store counts a
provider's room (under its lock) and asks; it never decides on its own."""

from __future__ import annotations

from collections.abc import Mapping


def in_flight(room: Mapping[str, int]) -> int:
    """Jobs at the provider: submitted and not yet ended, plus sends under way."""
    return int(room["started"]) + int(room["sending"])


def admits_now(room: Mapping[str, int], cap: int | None, *, send_now: bool) -> bool:
    """A new task is sent at once: nothing waits ahead of it (first come, first served), its
    provider has a free slot, and its rate is free (`send_now`)."""
    return send_now and room["waiting"] == 0 and (cap is None or in_flight(room) < cap)


def claimable(room: Mapping[str, int], cap: int | None, limit: int) -> int:
    """How many waiting tasks one claim may hand out: at most `limit`, the free slots, and the
    tasks waiting."""
    free = limit if cap is None else min(limit, cap - in_flight(room))
    return max(0, min(free, room["waiting"]))
