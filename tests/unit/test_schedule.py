"""Poll scheduling: the provider's pace, backoff with jitter to a cap, Retry-After obeyed."""

from __future__ import annotations

import random

from service.domain import schedule
from service.domain.status import Status
from service.providers.apiframe import ApiframeProvider

PROVIDER = ApiframeProvider(api_key="k")  # poll_interval 2.5, callbacks
NOW = 1_000_000.0


def test_callback_providers_wait_for_silence_before_polling() -> None:
    assert schedule.after_submit(PROVIDER, 60, NOW).next_poll_at == NOW + 60
    assert schedule.after_callback(60, NOW).next_poll_at == NOW + 60


def test_polls_that_learn_nothing_back_off_to_the_cap() -> None:
    rng = random.Random(1)
    waits = []
    attempts = 0
    for _ in range(20):
        s = schedule.after_poll(PROVIDER, Status.IN_PROGRESS, attempts, NOW, rng)
        assert s.idle_next_poll_at is not None
        waits.append(s.idle_next_poll_at - NOW)
        attempts = s.idle_attempts
        # A poll that changes the task goes back to the provider's pace (+-20%).
        assert 2.5 * 0.8 <= s.next_poll_at - NOW <= 2.5 * 1.2 and s.attempts == 0
    assert waits[0] < waits[5] < waits[10]
    assert max(waits) <= schedule.CAP and waits[-1] >= schedule.CAP * 0.8


def test_errors_back_off_and_retry_after_is_a_floor() -> None:
    rng = random.Random(2)
    s = schedule.after_error(PROVIDER, 0, NOW, rng)
    assert s.attempts == 1 and s.next_poll_at - NOW <= 2.5 * 1.5 * 1.2
    s = schedule.after_error(PROVIDER, 0, NOW, rng, retry_after=30)
    assert s.next_poll_at - NOW >= 30


def test_modal_tasks_are_checked_only_now_and_then() -> None:
    s = schedule.after_poll(PROVIDER, Status.MODAL, 0, NOW, random.Random(3))
    assert s.next_poll_at - NOW >= schedule.CAP * 0.8 and s.idle_next_poll_at is None
