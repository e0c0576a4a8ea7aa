"""What a delivery attempt's outcome means for its endpoint (pure: stores pass the facts)."""

from __future__ import annotations

from typing import Final

#: An endpoint failing without a single success for this long is disabled.
DISABLE_AFTER: Final = 5 * 24 * 3600.0


def disable_reason(http_status: int | None, at: float, failing_since: float | None) -> str | None:
    """Why a failed attempt at `at` disables its endpoint (None: it does not): a 410 Gone says
    the receiver is gone for good; five days of failures without one success say so too."""
    if http_status == 410:
        return "the endpoint answered 410 Gone"
    if failing_since is not None and at - failing_since >= DISABLE_AFTER:
        return "the endpoint failed every delivery for 5 days"
    return None
