"""Bounds on JSON where it enters jobhook: request bodies, provider callbacks, provider answers.

orjson reads 1024 levels of nesting but writes only 254: a value accepted deeper than that would
fail every later write of its task (the event, the webhook body) and stall whoever touches it.
So nothing deeper than MAX_DEPTH levels gets in, and every value that gets in can be written.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

#: Deepest nesting of objects and arrays accepted anywhere: `{"a": [1]}` is 2 levels deep.
MAX_DEPTH: Final = 32


class JSONRefused(ValueError):
    """The text is not JSON jobhook takes: not JSON at all, or nested too deep."""


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests objects and arrays more than `limit` levels deep (no recursion)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH, lenient: bool = False) -> Any:
    """Parse `raw` (RFC 8259 JSON; integers past 64 bits read as floats, so they can be written
    back); raises JSONRefused naming what is wrong. `lenient` (for providers' bodies) also reads
    NaN and Infinity, as null."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not lenient:
            raise JSONRefused(f"not valid JSON: {exc}") from None
        try:
            value = json.loads(raw, parse_constant=lambda _: None, parse_int=_int)
        except (ValueError, RecursionError):
            raise JSONRefused(f"not valid JSON: {exc}") from None
    # Fewer brackets than the limit cannot nest past it: the walk is for the rare deep body.
    if isinstance(raw, bytes):
        brackets = raw.count(b"{") + raw.count(b"[")
    else:
        brackets = raw.count("{") + raw.count("[")
    if brackets > max_depth and too_deep(value, max_depth):
        raise JSONRefused(f"nested deeper than {max_depth} levels")
    return value


def _int(text: str) -> int | float:
    number = int(text)
    return number if -(2**63) <= number < 2**64 else float(number)
