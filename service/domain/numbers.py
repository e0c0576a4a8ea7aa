"""Whole numbers read from text (query parameters, headers, providers' codes): ASCII digits
only. `str.isdigit` also says yes to "²" and "①", which `int()` then refuses with a crash."""

from __future__ import annotations

from typing import Final

#: More digits than this is no count or code jobhook reads (and no huge int is ever built).
MAX_DIGITS: Final = 18


def whole_number(text: str) -> int | None:
    """The number `text` spells in ASCII digits (no sign, no blanks), or None."""
    if 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None
