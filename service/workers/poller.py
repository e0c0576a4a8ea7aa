"""The poller: asks providers about tasks whose poll is due, and ingests what they say.

Due times live in the store; a claim leases a task to this process so no two workers poll it at
once. Concurrency is bounded per process (JOBHOOK_POLL_CONCURRENCY); requests per provider by the
process's rate limits (`svc.rates`, shared with submissions), which also obey Retry-After. When
nothing is due the loop sleeps until the next due time (or a wake-up).

How late each poll runs against its due time is measured (`jobhook_poll_lag_seconds`); a poller
that runs late says so in a `poll.behind` line (at most one a minute) naming what holds it back:
the provider's rate limit, or its concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.domain import schedule
from service.domain.models import Observation, task_error
from service.domain.status import Status
from service.errors import JobhookError, ProviderRejected, ProviderUnavailable
from service.logging import log
from service.providers.base import Provider, QueryShapes
from service.providers.client import send
from service.services import Services
from service.store.base import PollClaim

#: A poll this many seconds past its due time is late (the poller is not keeping the pace).
LATE = 1.0
#: At most one `poll.behind` line per this many seconds.
BEHIND_EVERY = 60.0
#: Tasks of a provider are claimed only while a poll asked now would run within this many
#: seconds (its rate not booked further ahead, no Retry-After hold).
SOON = 1.0
#: A poll that waited longer than this for a token was held back by the rate limit.
RATE_BOUND = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class PollerConfig:
    #: polls in flight at once, over all providers (None: JOBHOOK_POLL_CONCURRENCY)
    concurrency: int | None = None
    #: seconds a claim is ours; a crashed worker's claims are free again after it
    lease: float = 30.0
    #: longest sleep when nothing is due (other processes may schedule polls)
    idle_sleep: float = 5.0
    #: seconds one poll request may take
    timeout: float = 15.0


DEFAULT_POLLER_CONFIG = PollerConfig()

#: What a provider refusing a query for good means for the task.
_LOST = {
    403: ("provider_forbidden", "the provider says the task belongs to another account"),
    404: ("provider_lost", "the provider no longer knows the task (expired or never created)"),
}


class Poller:
    def __init__(
        self,
        svc: Services,
        config: PollerConfig = DEFAULT_POLLER_CONFIG,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.svc = svc
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self.concurrency = config.concurrency or svc.settings.poll_concurrency
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._sleep_until = 0.0  # the clock time the current sleep ends
        self._stopping = False
        self._late = 0  # late polls since the last `poll.behind` line
        self._polls = 0  # polls since then
        self._worst = 0.0  # the latest of them, seconds past due
        self._throttled = 0  # of them, polls that waited for the provider's rate limit
        self._behind_at = 0.0  # when the last `poll.behind` line was written

    def wake(self, due: float | None = None) -> None:
        """Look for due polls now, if `due` (a newly scheduled poll) comes before the loop
        would wake anyway: a callback pushing a poll a minute out costs nothing here."""
        if due is None or due < self._sleep_until:
            self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._round()
            except Exception as exc:  # the store is busy or gone: back off, never die
                detail = exc.detail if isinstance(exc, JobhookError) else repr(exc)
                log.error("poll.loop_error", error=detail)
                await self._sleep(self.config.idle_sleep)

    async def _round(self) -> None:
        self._wake.clear()  # a wake-up from here on ends the coming sleep
        free = self.concurrency - len(self._inflight)
        # A provider under Retry-After, or whose rate is booked for the next moment, is not
        # claimed for: its tasks wait in the store (where every process sees how late they
        # are), not here holding leases that could run out before their turn.
        held = self.svc.rates.busy(SOON)
        if free > 0:
            claims = await self.svc.store.claim_due_polls(
                self.clock(), limit=free, lease=self.config.lease, skip=sorted(held)
            )
            for claim in claims:
                task = asyncio.create_task(self.poll(claim))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if len(claims) == free:
                return  # maybe more are due: claim again once slots free up
        due = await self.svc.store.next_poll_due()
        delay = self.config.idle_sleep if due is None else due - self.clock()
        if delay <= 0 and held:  # what is due belongs to held providers
            delay = min(held.values())
        await self._sleep(min(max(delay, 0.05), self.config.idle_sleep))

    async def _sleep(self, seconds: float) -> None:
        self._sleep_until = self.clock() + seconds
        waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self._wake.wait())}
        if len(self._inflight) >= self.concurrency:
            waiters |= set(self._inflight)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleep_until = 0.0  # awake: any new poll is looked at by the next round
            for w in waiters:
                if w not in self._inflight:
                    w.cancel()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let in-flight polls finish (up to `grace` s), then cancel the rest.
        A cancelled poll keeps its lease, which expires on its own."""
        self._stopping = True
        self._wake.set()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()

    async def poll(self, claim: PollClaim) -> None:
        """One poll of one claimed task, ending in an ingest or a reschedule."""
        try:
            await self._poll(claim)
        except Exception as exc:  # a bug or a store failure: look again later, never hot-loop
            log.error("poll.crashed", task_id=claim.task_id, provider=claim.provider, exc_info=exc)
            with contextlib.suppress(Exception):
                await self.svc.store.reschedule(
                    claim.task_id, schedule.after_error_cap(self.clock())
                )

    async def _poll(self, claim: PollClaim) -> None:
        svc = self.svc
        provider = svc.providers.get(claim.provider)
        bind = {"task_id": claim.task_id, "provider": claim.provider}
        if provider is None:  # disabled since the task was made; look again later
            await svc.store.reschedule(claim.task_id, schedule.after_error_cap(self.clock()))
            self._result(log.warning, result="provider_disabled", **bind)
            return
        bucket = svc.rates.bucket(claim.provider)
        asked = self.clock()
        await bucket.take()
        waited = self.clock() - asked
        if waited > max(RATE_BOUND, self.config.lease - self.config.timeout):
            # Too little of the lease is left for the request: another process may take the
            # task once it runs out. Leave it to whoever claims it next; it is due already.
            self._result(log.warning, result="lease_spent", waited=round(waited, 1), **bind)
            return
        self._lag(claim, bucket.rate, waited=waited)
        try:
            obs = await self._query(provider, claim)
        except ProviderUnavailable as exc:
            if exc.retry_after:
                bucket.hold(exc.retry_after)
            await svc.store.reschedule(
                claim.task_id,
                schedule.after_error(
                    provider, claim.attempts, self.clock(), self.rng, exc.retry_after
                ),
            )
            self._result(log.warning, result="unavailable", error=exc.detail, **bind)
            return
        except ProviderRejected as exc:
            await self._rejected(provider, claim, exc)
            return
        applied = await svc.ingest(
            claim.task_id,
            obs,
            schedule=schedule.after_poll(
                provider, obs.status or claim.status, claim.attempts, self.clock(), self.rng
            ),
        )
        self._result(
            log.info,
            result="changed" if applied.decision.applied else "unchanged",
            status=applied.task["status"],
            **bind,
        )

    async def _query(self, provider: Provider, claim: PollClaim) -> Observation:
        """What the provider's API says of the task. A provider with two ways to read a task
        (QueryShapes: APIMart) is asked the other way when the first answers 404, and told
        which answered; only when every way answers 404 is the task unknown to it."""
        shaped = provider if isinstance(provider, QueryShapes) else None
        if shaped is None:
            requests = [provider.build_query(claim.provider_task_id)]
        else:
            requests = shaped.query_requests(claim.provider_task_id, after_modal=claim.after_modal)
        for n, request in enumerate(requests):
            if n:
                await self.svc.rates.bucket(claim.provider).take()
            response = await send(self.svc.http, provider, request, timeout=self.config.timeout)
            try:
                obs = provider.parse_query(response)
            except ProviderRejected as exc:
                if exc.http_status != 404 or shaped is None:
                    raise
                shaped.query_answered(request, found=False)
                if n + 1 == len(requests):
                    raise
                log.info(
                    "poll.fallback",
                    task_id=claim.task_id,
                    provider=claim.provider,
                    path=request.path.rsplit("/", 1)[0] + "/{id}",
                )
                continue
            if shaped is not None:
                shaped.query_answered(request, found=True)
            return obs
        raise AssertionError("unreachable: the last request's answer returns or raises")

    def _lag(self, claim: PollClaim, rate: float, *, waited: float) -> None:
        """Measure how late this poll runs; now and then, say so if polls run late, and what
        held them back: the rate limit (polls waited for it), else the concurrency (every
        slot busy), else the store or the provider's answers."""
        now = self.clock()
        lag = max(0.0, now - claim.due_at) if claim.due_at else 0.0
        self.svc.metrics.poll_lag.observe(lag)
        self._polls += 1
        self._throttled += waited > RATE_BOUND
        if lag > LATE:
            self._late += 1
            self._worst = max(self._worst, lag)
        if now - self._behind_at < BEHIND_EVERY:
            return
        if self._late:
            if self._throttled * 2 > self._polls:
                limit = f"rate: {claim.provider} at {rate:g} requests/s (JOBHOOK_PROVIDER_RATES)"
            elif len(self._inflight) >= self.concurrency:
                limit = f"concurrency: {self.concurrency} in flight (JOBHOOK_POLL_CONCURRENCY)"
            else:
                limit = "neither rate nor concurrency: this process's CPU, the store, the provider"
            log.warning(
                "poll.behind",
                late=self._late,
                polls=self._polls,
                worst_seconds=round(self._worst, 1),
                limit=limit,
            )
        self._behind_at, self._late, self._polls, self._worst = now, 0, 0, 0.0
        self._throttled = 0

    def _result(self, emit: Any, *, result: str, provider: str, **fields: Any) -> None:
        """One `poll.result` line, and the metric counting it."""
        self.svc.metrics.polls.inc(provider, result)
        emit("poll.result", result=result, provider=provider, **fields)

    async def _rejected(self, provider: Provider, claim: PollClaim, exc: ProviderRejected) -> None:
        bind = {"task_id": claim.task_id, "provider": claim.provider}
        lost = _LOST.get(exc.http_status)
        if exc.http_status == 403 and not getattr(provider, "forbidden_means_lost", False):
            lost = None  # e.g. Vtrix: balance or permission, which the operator can fix
        if lost is None:  # 400/401/...: our request or key is wrong; retry slowly, loudly
            await self.svc.store.reschedule(
                claim.task_id,
                schedule.after_error(provider, claim.attempts, self.clock(), self.rng),
            )
            self._result(log.error, result="refused", error=exc.detail, **bind)
            return
        code, message = lost
        await self.svc.ingest(
            claim.task_id,
            Observation(
                status=Status.FAILURE,
                source="poll",
                error=task_error(code, f"{message}: {exc.detail}", str(exc.http_status)),
                detail=message,
            ),
        )
        self._result(log.warning, result=code, **bind)
