"""The submission queue's admission rule (service/domain/queue.py), which both stores ask."""

from __future__ import annotations

from service.domain.queue import admits_now, claimable


def room(started: int = 0, sending: int = 0, waiting: int = 0) -> dict[str, int]:
    return {"started": started, "sending": sending, "waiting": waiting}


def test_a_new_task_goes_at_once_only_with_nothing_ahead_a_free_slot_and_a_free_rate() -> None:
    assert admits_now(room(), None, send_now=True)
    assert admits_now(room(started=2), 3, send_now=True)
    assert not admits_now(room(started=2, sending=1), 3, send_now=True)  # the cap is full
    assert not admits_now(room(waiting=1), None, send_now=True)  # first come, first served
    assert not admits_now(room(), None, send_now=False)  # the rate is booked


def test_a_claim_hands_out_no_more_than_the_free_slots_the_waiting_and_the_limit() -> None:
    assert claimable(room(waiting=10), None, 4) == 4
    assert claimable(room(started=1, sending=1, waiting=10), 3, 8) == 1
    assert claimable(room(waiting=2), 3, 8) == 2
    assert claimable(room(started=5, waiting=2), 3, 8) == 0  # over the cap (lowered): none
