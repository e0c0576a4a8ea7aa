"""Limits the web layer keeps per client and per owner, in memory, per process.

- `AuthThrottle`: failed authentications per client address; past `limit` in `window` seconds
  that address's wrong keys are answered 429 until the window has passed (a right key always
  passes: a tenant sharing the address is never locked out).
- `Slots`: concurrent long-lived requests (long-polls and event streams) per owner and in total.
- `too_many_requests`: the 429 problem a handler raises; `Guard` adds its `Retry-After`.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.requests import Request

from service.errors import JobhookError

#: failed authentications per client address before it is throttled, and over how many seconds
AUTH_FAILURE_LIMIT = 10
AUTH_FAILURE_WINDOW = 60.0
#: client addresses whose failures are remembered (least recently failed forgotten first)
AUTH_TRACKED_ADDRESSES = 10_000

#: concurrent long-polls + event streams per owner, and in all
LONG_LIVED_PER_OWNER = 64
LONG_LIVED_TOTAL = 1000
#: what a client refused a long-lived slot is told to wait before trying again
LONG_LIVED_RETRY_AFTER = 5


class TooManyRequests(JobhookError):
    """Too many requests."""

    status = 429
    slug = "too-many-requests"


def too_many_requests(request: Request, detail: str, retry_after: float) -> TooManyRequests:
    """A 429 to raise; `Guard` sends it with `Retry-After: <retry_after>` (whole seconds)."""
    seconds = max(1, math.ceil(retry_after))
    request.state.retry_after = seconds
    return TooManyRequests(detail, retry_after=seconds)


# ---- host names -------------------------------------------------------------------------------


def _address_key(address: str) -> str:
    """IPv6 clients are counted per /64: one host usually holds a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    """Failed authentications per client address, in memory (per process).

    Each tracked address keeps the times of its last `limit` failures; while the oldest of
    them is less than `window` seconds old the address is throttled. At most `max_addresses`
    are tracked (the least recently failing is forgotten first), so memory is bounded.
    """

    def __init__(
        self,
        *,
        limit: int = AUTH_FAILURE_LIMIT,
        window: float = AUTH_FAILURE_WINDOW,
        max_addresses: int = AUTH_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it is not throttled."""
        failures = self._failures.get(_address_key(address))
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self._clock())

    def failed(self, address: str) -> None:
        key = _address_key(address)
        now = self._clock()
        failures = self._failures.pop(key, None)
        if failures is None:
            failures = deque(maxlen=self.limit)
        while failures and failures[0] + self.window <= now:
            failures.popleft()
        failures.append(now)
        self._failures[key] = failures  # most recent last
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    @property
    def tracked(self) -> int:
        return len(self._failures)


def auth_throttle(request: Request) -> AuthThrottle:
    """The app's throttle, made on first use."""
    state = request.app.state
    throttle: AuthThrottle | None = getattr(state, "auth_throttle", None)
    if throttle is None:
        throttle = state.auth_throttle = AuthThrottle()
    return throttle


# ---- long-lived requests ----------------------------------------------------------------------


class Slots:
    """Concurrent long-lived requests (long-polls, event streams) per owner and in all."""

    def __init__(
        self, *, per_owner: int = LONG_LIVED_PER_OWNER, total: int = LONG_LIVED_TOTAL
    ) -> None:
        self.per_owner = per_owner
        self.total = total
        self._held: dict[str, int] = {}
        self._count = 0

    def acquire(self, owner: str) -> bool:
        if self._count >= self.total or self._held.get(owner, 0) >= self.per_owner:
            return False
        self._held[owner] = self._held.get(owner, 0) + 1
        self._count += 1
        return True

    def release(self, owner: str) -> None:
        held = self._held.get(owner, 0)
        if held <= 0:
            return
        self._count -= 1
        if held == 1:
            del self._held[owner]
        else:
            self._held[owner] = held - 1

    @property
    def in_use(self) -> int:
        return self._count

    def held(self, owner: str) -> int:
        return self._held.get(owner, 0)


def long_lived_slots(request: Request) -> Slots:
    """The app's slots for long-polls and event streams, made on first use."""
    state = request.app.state
    slots: Slots | None = getattr(state, "long_lived", None)
    if slots is None:
        slots = state.long_lived = Slots()
    return slots


def take_slot(request: Request, owner: str, what: str) -> Callable[[], None]:
    """Hold one of `owner`'s long-lived slots, or raise 429; returns the (idempotent) release."""
    slots = long_lived_slots(request)
    if not slots.acquire(owner):
        raise too_many_requests(
            request,
            f"too many {what} open (at most {slots.per_owner} per client and "
            f"{slots.total} in all); close one or try again later",
            LONG_LIVED_RETRY_AFTER,
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release(owner)

    return release


@contextmanager
def slot(request: Request, owner: str, what: str) -> Iterator[None]:
    """`take_slot` for the length of a `with` block."""
    release = take_slot(request, owner, what)
    try:
        yield
    finally:
        release()
