"""Time-ordered ids: a prefix plus 26 Crockford base32 characters.

48 bits of milliseconds then 80 random bits, like a ULID; monotonic within one process.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """Return `prefix_` + a ULID-style id, monotonic within this process (same-ms ids increment)."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_rand = ms, rand
    return f"{prefix}_{_encode((ms << 80) | rand, 26)}"


def is_id(value: str, prefix: str) -> bool:
    head, sep, body = value.partition("_")
    return head == prefix and sep == "_" and len(body) == 26 and all(c in _ALPHABET for c in body)
