"""The submitter: sends queued tasks to their providers, within each provider's limits.

A task the API could not send at once (the provider at JOBHOOK_<PROVIDER>_CONCURRENCY jobs in
flight, its rate booked, a 429, a refused connection) waits in the store's submission queue.
This loop claims queued tasks with a lease, as the poller claims polls: the store counts the
provider's jobs in flight (submitted, not terminal, over every process) and hands out no more
than its free slots, round-robin across owners. Each claim is one attempt (`submit_queued`):
accepted, sent back to the queue with backoff (429, refused), or ended through ingest
(`submit_timeout`, `submit_unknown`, the provider's refusal).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

from service.errors import JobhookError
from service.logging import log
from service.providers.base import Provider
from service.services import Services
from service.store.base import SubmitClaim
from service.submit import SOON, SUBMIT_LEASE, submit_queued

#: Submissions in flight at once in one process, over all providers.
CONCURRENCY = 32
#: Longest sleep while tasks wait (other processes may free slots: the store is asked again).
BUSY_SLEEP = 0.2
#: Longest sleep while nothing waits (a local queueing or ending wakes the loop at once).
IDLE_SLEEP = 1.0
#: Seconds a task whose attempt crashed waits before it is tried again.
CRASH_DELAY = 5.0


class Submitter:
    def __init__(
        self,
        svc: Services,
        *,
        concurrency: int = CONCURRENCY,
        lease: float = SUBMIT_LEASE,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.svc = svc
        self.concurrency = concurrency
        self.lease = lease
        self.clock = clock
        self.rng = rng or random.Random()
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        #: set when the loop has exited (never while a claim is under way: its leases would
        #: then be held by nobody until they run out)
        self._stopped = asyncio.Event()
        self._stopped.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        self._stopped.clear()
        try:
            while not self._stopping:
                self._wake.clear()
                waiting = False
                try:
                    waiting = await self._round()
                except Exception as exc:  # the store is busy or gone: back off, never die
                    detail = exc.detail if isinstance(exc, JobhookError) else repr(exc)
                    log.error("submit.loop_error", error=detail)
                if not self._stopping:
                    await self._sleep(BUSY_SLEEP if waiting else IDLE_SLEEP)
        finally:
            self._stopped.set()

    async def _round(self) -> bool:
        """Claim what the providers have room for; True if tasks still wait."""
        svc = self.svc
        now = self.clock()
        depths = await svc.store.queue_depths(now)
        held = svc.rates.busy(SOON)
        waiting = False
        for name, depth in depths.items():
            if depth.waiting == 0:
                continue
            waiting = True
            provider = svc.providers.get(name)
            free = self.concurrency - len(self._inflight)
            if provider is None or name in held or free <= 0:
                continue
            claims = await svc.store.claim_submissions(
                name, now, cap=svc.settings.concurrency(name), limit=free, lease=self.lease
            )
            for claim in claims:
                task = asyncio.create_task(self.attempt(provider, claim))
                self._inflight.add(task)
                task.add_done_callback(self._done)
        return waiting

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def attempt(self, provider: Provider, claim: SubmitClaim) -> None:
        started = self.clock()
        try:
            result = await submit_queued(self.svc, provider, claim, clock=self.clock, rng=self.rng)
        except Exception as exc:  # a bug or a store failure: try again later, never hot-loop
            log.error(
                "submit.crashed", task_id=claim.task_id, provider=claim.provider, exc_info=exc
            )
            with contextlib.suppress(Exception):
                await self.svc.store.release_submission(
                    claim.task_id, due_at=self.clock() + CRASH_DELAY, last_answer=repr(exc)
                )
            result = "crashed"
        metrics = self.svc.metrics
        metrics.submissions.inc(claim.provider, result)
        if result == "submitted":
            metrics.submit_wait.observe(started - claim.queued_at)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let attempts under way finish (up to `grace` s), then cancel the rest
        (a cancelled attempt keeps its lease, which runs out on its own)."""
        self._stopping = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):  # a claim under way is seen through first
            await asyncio.wait_for(self._stopped.wait(), timeout=grace)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()
