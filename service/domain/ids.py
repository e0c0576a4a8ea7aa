"""Time-ordered ids: a prefix plus 26 Crockford base32 characters.

48 bits of milliseconds then 80 random bits, like a ULID; monotonic within one process.
"""

from __future__ import annotations

import random
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_rng = random.Random()
_last_ms = 0
_last_rand = 0


#: Every 10-bit value as its two Crockford characters: 13 lookups make an id (on the hot path).
_PAIRS = [_ALPHABET[i >> 5] + _ALPHABET[i & 31] for i in range(1024)]


def _encode(value: int, length: int) -> str:
    """`value` as `length` (even) Crockford base32 characters, most significant first."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in range(5 * (length - 2), -1, -10)])


def new_id(prefix: str) -> str:
    """Return `prefix_` + a ULID-style id, monotonic within this process (same-ms ids increment)."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            # Ids are not secrets (access is by API key and signed callback tokens); a PRNG
            # avoids a syscall, which would hand the GIL away, on the writer's hot path.
            rand = _rng.getrandbits(80)
        _last_ms, _last_rand = ms, rand
    return f"{prefix}_{_encode((ms << 80) | rand, 26)}"


def is_id(value: str, prefix: str) -> bool:
    head, sep, body = value.partition("_")
    return head == prefix and sep == "_" and len(body) == 26 and all(c in _ALPHABET for c in body)
