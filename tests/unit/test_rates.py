"""The per-provider request rate: a token bucket with reservations, shared by every request a
process sends a provider, that obeys Retry-After holds and refuses a submission that would
wait too long (with the Retry-After to come back at)."""

from __future__ import annotations

import asyncio

import pytest

from service.config import Settings
from service.errors import ProviderBusy
from service.providers.rates import DEFAULT_RATE, SIMULATOR_RATE, RateLimit, Rates, default_rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_seconds_worth_of_burst_then_one_token_per_interval() -> None:
    clock = Clock()
    bucket = RateLimit(4.0, clock)
    waits = [bucket.reserve()[1] for _ in range(6)]
    assert waits[:4] == [0.0] * 4  # the burst
    assert waits[4] == pytest.approx(0.25) and waits[5] == pytest.approx(0.5)  # queued, in turn
    clock.now += 10  # refilled, but never beyond the burst
    assert [bucket.reserve()[1] for _ in range(4)] == [0.0] * 4
    assert bucket.reserve()[1] == pytest.approx(0.25)


def test_a_slow_rate_still_allows_one_request_at_once() -> None:
    bucket = RateLimit(0.1, Clock())
    assert bucket.reserve() == (True, 0.0)
    assert bucket.reserve()[1] == pytest.approx(10.0)


def test_a_hold_delays_everyone_and_a_bounded_reservation_takes_nothing() -> None:
    clock = Clock()
    bucket = RateLimit(100.0, clock)
    bucket.hold(30)
    assert bucket.held_for == 30
    assert bucket.reserve(max_wait=5) == (False, 30.0)
    taken, wait = bucket.reserve()
    assert taken and wait == 30.0
    clock.now += 31
    assert bucket.held_for == 0 and bucket.reserve() == (True, 0.0)


async def test_take_within_refuses_with_a_retry_after_when_the_rate_is_spent() -> None:
    clock = Clock()
    rates = Rates([("apimart", 0.5)], clock)
    await rates.take_within("apimart", 5)  # the one token
    with pytest.raises(ProviderBusy) as caught:
        await rates.take_within("apimart", 1)
    assert caught.value.retry_after == 2.0 and "0.5/s" in caught.value.detail
    rates.bucket("apimart").hold(60)
    with pytest.raises(ProviderBusy) as caught:
        await rates.take_within("apimart", 5)
    assert caught.value.retry_after == 60.0 and "Retry-After" in caught.value.detail
    assert rates.held() == {"apimart": 60.0}


async def test_waiters_are_served_in_turn_and_the_wait_is_counted() -> None:
    rates = Rates([("p", 50.0)])
    bucket = rates.bucket("p")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(rates.take("p") for _ in range(60)))
    # 50 at once, then 10 more at 50/s: about 0.2 s, whatever the order they asked in.
    assert loop.time() - started >= 0.15
    assert bucket.waited > 0


def test_rates_come_from_settings_or_the_defaults() -> None:
    settings = Settings(provider_rates={"apimart": 3.0})
    assert default_rate("apimart", settings) == 3.0
    assert default_rate("vtrix", settings) == DEFAULT_RATE
    assert default_rate("simulator-apimart", settings) == SIMULATOR_RATE
    rates = Rates([("apimart", 3.0), ("vtrix", DEFAULT_RATE)])
    assert [(name, rate) for name, rate, _ in rates.snapshot()] == [
        ("apimart", 3.0),
        ("vtrix", DEFAULT_RATE),
    ]
