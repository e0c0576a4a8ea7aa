"""The deliverer: sends outbox rows to client backends as signed Standard Webhooks, with retries.

Schedule (DESIGN §7): 0 s, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h (+-20% jitter),
then dead letter. 2xx delivered; 3xx is a failure (never followed); 410 stops and disables the
endpoint; Retry-After is honoured up to a day. Rows are leased, so a crashed process's
deliveries go out again once the lease ends; per task and subscriber, order is kept by the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx

from service.errors import JobhookError
from service.logging import log
from service.security.signing import webhook_headers
from service.security.ssrf import OutboundGuard, UnsafeURL, guarded_request
from service.services import Services
from service.store.base import DeliveryClaim, DeliveryResult
from service.store.common import RESPONSE_KEPT

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.2
MAX_RETRY_AFTER = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DelivererConfig:
    concurrency: int = 32
    #: attempts in flight per receiving URL, so one slow receiver cannot starve the others
    per_endpoint: int = 4
    lease: float = 30.0
    timeout: float = 15.0
    idle_sleep: float = 5.0


DEFAULT_DELIVERER_CONFIG = DelivererConfig()


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            return None


class Deliverer:
    def __init__(
        self,
        svc: Services,
        guard: OutboundGuard,
        config: DelivererConfig = DEFAULT_DELIVERER_CONFIG,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.svc = svc
        self.guard = guard
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random()
        self._inflight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before looking, not after: a wake-up (an attempt ending, a new outbox
            # row) while the store is read must end the coming sleep, not be forgotten.
            self._wake.clear()
            try:
                free = self.config.concurrency - len(self._tasks)
                if free > 0 and await self.deliver_due(wait=False) == free:
                    continue  # maybe more are due: claim again (a partial claim took them all)
                due = await self.svc.store.next_delivery_due()
                delay = self.config.idle_sleep if due is None else due - self.clock()
            except Exception as exc:  # never let the loop die: deliveries would wait forever
                detail = exc.detail if isinstance(exc, JobhookError) else repr(exc)
                log.error("delivery.loop_error", error=detail)
                delay = self.config.idle_sleep  # the store is busy or gone: back off
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), timeout=min(max(delay, 0.05), self.config.idle_sleep)
                )

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()

    async def deliver_due(self, *, wait: bool = True) -> int:
        """Claim what is due now and send it; with `wait`, return after every attempt ended."""
        free = self.config.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        claims = await self.svc.store.claim_due_deliveries(
            self.clock(),
            limit=free,
            lease=self.config.lease,
            per_url=self.config.per_endpoint,
            inflight=dict(self._inflight),
        )
        started = []
        for claim in claims:
            self._inflight[claim.url] += 1
            task = asyncio.create_task(self.attempt(claim))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, url=claim.url))
            started.append(task)
        if wait and started:
            await asyncio.wait(started)
        return len(started)

    async def settle(self) -> None:
        """Wait for the attempts under way (tests, and shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    def _done(self, task: asyncio.Task[None], url: str) -> None:
        self._tasks.discard(task)
        self._inflight[url] -= 1
        if self._inflight[url] <= 0:
            del self._inflight[url]
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery.crashed", exc_info=task.exception())
        self._wake.set()

    async def attempt(self, claim: DeliveryClaim) -> None:
        now = self.clock()
        secrets = claim.secrets or (self.svc.settings.webhook_secret or "",)
        # The signed timestamp is wall time whatever the scheduling clock says: receivers
        # reject signatures more than five minutes off their own clock.
        headers = webhook_headers(secrets, claim.id, int(time.time()), claim.payload)
        http_status: int | None = None
        retry_after: float | None = None
        answer: str | None = None
        started = time.monotonic()
        try:
            response = await guarded_request(
                self.svc.http,
                self.guard,
                "POST",
                claim.url,
                content=claim.payload,
                headers=headers,
                timeout=self.config.timeout,
            )
            http_status = response.status_code
            # text for both stores (PostgreSQL's text holds no NUL)
            answer = (
                response.body[:RESPONSE_KEPT].decode("utf-8", "replace").replace("\x00", "\ufffd")
            )
            retry_after = _retry_after(response.headers.get("retry-after"), now)
            error = None if 200 <= http_status < 300 else f"answered {http_status}"
        except UnsafeURL as exc:
            error = f"refused: {exc.reason}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: could not deliver"
        result = self._result(claim, now, http_status, error, retry_after)
        result = dataclasses.replace(
            result,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            response=answer,
        )
        disabled = await self.svc.store.record_delivery(claim, result)
        bind = {
            "delivery_id": claim.id,
            "task_id": claim.task_id,
            "attempt": claim.attempts + 1,
            "http_status": http_status,
        }
        self.svc.metrics.deliveries.inc(
            {"delivered": "delivered", "pending": "retrying", "dead": "dead"}[result.status]
        )
        if result.status == "dead":
            log.warning("delivery.dead", error=error, **bind)
        else:
            log.info("delivery.attempt", result=result.status, error=error, **bind)
        if disabled:
            log.warning("endpoint.disabled", endpoint_id=claim.subscriber, reason=error)

    def _result(
        self,
        claim: DeliveryClaim,
        now: float,
        http_status: int | None,
        error: str | None,
        retry_after: float | None,
    ) -> DeliveryResult:
        if error is None:
            return DeliveryResult(
                status="delivered", at=now, next_attempt_at=now, http_status=http_status
            )
        attempts = claim.attempts + 1
        if http_status == 410 or attempts >= len(SCHEDULE):
            return DeliveryResult(
                status="dead", at=now, next_attempt_at=now, http_status=http_status, error=error
            )
        wait = SCHEDULE[attempts] * self.rng.uniform(1 - JITTER, 1 + JITTER)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return DeliveryResult(
            status="pending",
            at=now,
            next_attempt_at=now + wait,
            http_status=http_status,
            error=error,
        )
