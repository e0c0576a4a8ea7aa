"""When to poll a task next: pure functions of the provider's facts, the outcome and the clock.

Intervals start at the provider's recommendation, back off with jitter to a cap while polls
learn nothing or fail, and never come sooner than a provider's Retry-After.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from service.domain.status import Status


class Provider(Protocol):
    """The facts of a provider a schedule depends on."""

    @property
    def poll_interval(self) -> float: ...

    @property
    def supports_callbacks(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """When to poll a task next; `attempts` counts polls in a row that changed nothing.

    A poll does not know before ingest whether it changes the task: `idle_*` is the schedule
    to use when the observation is not applied (backed off), the plain one when it is.
    """

    next_poll_at: float
    attempts: int = 0
    idle_next_poll_at: float | None = None
    idle_attempts: int = 0
    #: the poll holding the task's lease is done with it (only the poller sets this)
    release: bool = False

    def pick(self, applied: bool) -> tuple[float, int]:
        if applied or self.idle_next_poll_at is None:
            return self.next_poll_at, self.attempts
        return self.idle_next_poll_at, self.idle_attempts


#: The longest wait between two polls of one running task.
CAP = 60.0
BACKOFF = 1.5
JITTER = 0.2


def _jitter(seconds: float, rng: random.Random) -> float:
    return seconds * rng.uniform(1 - JITTER, 1 + JITTER)


def backoff(base: float, attempts: int, rng: random.Random) -> float:
    return min(CAP, _jitter(base * BACKOFF**attempts, rng))


def after_submit(provider: Provider, reconcile_after: float, now: float) -> Schedule:
    """A callback provider is polled only if its callbacks go quiet; others at their pace."""
    wait = reconcile_after if provider.supports_callbacks else provider.poll_interval
    return Schedule(next_poll_at=now + wait)


def after_callback(reconcile_after: float, now: float) -> Schedule:
    return Schedule(next_poll_at=now + reconcile_after)


def after_poll(
    provider: Provider,
    status: Status,
    attempts: int,
    now: float,
    rng: random.Random,
) -> Schedule:
    """The schedule after a successful poll: the base pace if it changed the task, else
    backed off. A MODAL task waits on the client, so it is only checked now and then."""
    if status is Status.MODAL:
        return Schedule(next_poll_at=now + _jitter(CAP, rng), release=True)
    base = provider.poll_interval
    return Schedule(
        next_poll_at=now + _jitter(base, rng),
        attempts=0,
        idle_next_poll_at=now + backoff(base, attempts + 1, rng),
        idle_attempts=attempts + 1,
        release=True,
    )


def after_error(
    provider: Provider,
    attempts: int,
    now: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> Schedule:
    wait = backoff(provider.poll_interval, attempts + 1, rng)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return Schedule(next_poll_at=now + wait, attempts=attempts + 1, release=True)


def after_error_cap(now: float) -> Schedule:
    """Look again at the slowest pace (the provider is not enabled in this process)."""
    return Schedule(next_poll_at=now + CAP, release=True)
