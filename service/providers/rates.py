"""Requests per second to each provider, over everything this process sends it: submissions,
polls, modal calls. Providers limit an API key, not a kind of request, so one budget per
provider is shared by all of them.

A token bucket per provider, with a second's worth of burst, that hands out reservations: a
caller learns at once how long it must wait (polls wait; a submission that would wait longer
than its caller should is refused with a Retry-After instead). `hold` pauses a provider for
every caller at once (a 429's Retry-After).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable

from service.config import Settings
from service.errors import ProviderBusy

#: Requests per second per provider when JOBHOOK_PROVIDER_RATES says nothing. None of the three
#: providers publishes a number (they answer 429 with Retry-After, which jobhook obeys), so the
#: defaults are jobhook's: generous for one account, and the simulator's high enough for
#: thousands of live tasks.
DEFAULT_RATE = 20.0
SIMULATOR_RATE = 2000.0


def default_rate(provider: str, settings: Settings) -> float:
    """JOBHOOK_PROVIDER_RATES' figure for `provider`, else the default."""
    fallback = SIMULATOR_RATE if provider.startswith("simulator") else DEFAULT_RATE
    return settings.provider_rates.get(provider, fallback)


class RateLimit:
    """One provider's bucket. `rate` tokens a second, at most max(rate, 1) stored."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._stamp = clock()
        self._hold_until = 0.0
        #: seconds callers have spent waiting for this bucket (a sign the rate is the limit)
        self.waited = 0.0

    def hold(self, seconds: float) -> None:
        """Nobody asks this provider for `seconds` (it said Retry-After)."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    @property
    def held_for(self) -> float:
        """Seconds until the provider may be asked again (0: now)."""
        return max(0.0, self._hold_until - self._clock())

    def _refill(self) -> float:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return now

    @property
    def next_free(self) -> float:
        """Seconds a request asking now would wait (for a hold, or for the callers before it)."""
        now = self._refill()
        return max(self._hold_until - now, (1 - self._tokens) / self.rate, 0.0)

    def reserve(self, max_wait: float | None = None) -> tuple[bool, float]:
        """Take a token: (True, the seconds to wait before using it). With `max_wait`, a wait
        longer than that takes nothing: (False, the wait it would have been)."""
        wait = self.next_free
        if max_wait is not None and wait > max_wait:
            return False, wait
        self._tokens -= 1
        return True, wait

    async def take(self) -> None:
        """Wait for a token, and for any hold that began while waiting."""
        _, wait = self.reserve()
        while wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
            wait = self.held_for


class Rates:
    """Every provider's bucket in this process, made on first use from its `rate_limit`."""

    def __init__(
        self, limits: Iterable[tuple[str, float]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = dict(limits)
        self._clock = clock
        self._buckets: dict[str, RateLimit] = {}

    def bucket(self, provider: str) -> RateLimit:
        bucket = self._buckets.get(provider)
        if bucket is None:
            rate = self._limits.get(provider, DEFAULT_RATE)
            bucket = self._buckets[provider] = RateLimit(rate, self._clock)
        return bucket

    async def take(self, provider: str) -> None:
        await self.bucket(provider).take()

    async def take_within(self, provider: str, max_wait: float) -> None:
        """A token within `max_wait` seconds, or ProviderBusy with the Retry-After to try at."""
        bucket = self.bucket(provider)
        taken, wait = bucket.reserve(max_wait)
        if not taken:
            why = (
                "asked jobhook to wait (Retry-After)"
                if bucket.held_for > max_wait
                else f"is at jobhook's request rate for it ({bucket.rate:g}/s)"
            )
            raise ProviderBusy(
                f"{provider} {why}; retry shortly", retry_after=float(max(1, math.ceil(wait)))
            )
        if wait > 0:
            bucket.waited += wait
            await asyncio.sleep(wait)

    def held(self) -> dict[str, float]:
        """Providers under a Retry-After hold, and the seconds left."""
        return {name: b.held_for for name, b in self._buckets.items() if b.held_for > 0}

    def busy(self, soon: float) -> dict[str, float]:
        """Providers a request asked now could not reach within `soon` seconds (a hold, or
        their rate booked by requests already waiting), and how long it would wait."""
        return {name: wait for name, b in self._buckets.items() if (wait := b.next_free) > soon}

    def snapshot(self) -> list[tuple[str, float, float]]:
        """(provider, rate, seconds waited so far) for /metrics."""
        names = sorted({*self._limits, *self._buckets})
        return [(name, self.bucket(name).rate, self.bucket(name).waited) for name in names]
