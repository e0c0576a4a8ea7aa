"""Timers: tasks that stayed too long in one status end, through ingest like everything else.

MODAL past JOBHOOK_MODAL_TIMEOUT -> CANCEL (the provider cancels and refunds too); NOT_START
past the submit limit (jobhook stopped mid-submission) and SUBMITTED / IN_PROGRESS past the
queue / run deadlines -> FAILURE with error code `timeout`. A task whose ending fails for any
reason but a busy store is logged and parked for a while: one bad task never stalls the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from service.domain.models import Observation, task_error
from service.domain.status import Status
from service.errors import JobhookError, StoreUnavailable
from service.logging import log
from service.services import Services
from service.store.base import Due, TimerLimits
from service.submit import timed_out

_ENDINGS = {
    Status.MODAL: (Status.CANCEL, "modal_timeout", "no modal call came within {limit:g} s"),
    Status.NOT_START: (
        Status.FAILURE,
        "submit_interrupted",
        "jobhook stopped while submitting the task ({limit:g} s ago); the provider may not have it",
    ),
    Status.SUBMITTED: (Status.FAILURE, "timeout", "the task waited in the queue over {limit:g} s"),
    Status.IN_PROGRESS: (Status.FAILURE, "timeout", "the task ran for over {limit:g} s"),
}


#: Seconds a queued task the timers end is held from the submitter while they do.
TAKE_LEASE = 60.0
#: Seconds a task whose ending failed is left out before it is tried again.
PARK_SECONDS = 300.0
#: Parked tasks remembered at most (beyond it the oldest parking is forgotten, and retried).
MAX_PARKED = 1000


class Timers:
    def __init__(
        self,
        svc: Services,
        limits: TimerLimits,
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.svc = svc
        self.limits = limits
        self.interval = interval
        self.clock = clock
        self._stop = asyncio.Event()
        #: task id -> clock time until which it is left out
        self._parked: dict[str, float] = {}

    def _limit(self, status: Status) -> float:
        return {
            Status.MODAL: self.limits.modal,
            Status.NOT_START: self.limits.submit,
            Status.SUBMITTED: self.limits.queue,
            Status.IN_PROGRESS: self.limits.run,
        }[status]

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.fire()
            except Exception as exc:  # never let the loop die: tasks would wait forever
                detail = exc.detail if isinstance(exc, JobhookError) else repr(exc)
                log.error("timer.loop_error", error=detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval)

    async def stop(self) -> None:
        self._stop.set()

    async def fire(self) -> int:
        """End every task past its deadline now; returns how many ended."""
        now = self.clock()
        self._parked = {task_id: until for task_id, until in self._parked.items() if until > now}
        ended = 0
        for due in await self.svc.store.due_timers(now, self.limits, skip=list(self._parked)):
            try:
                ended += await self._end(due)
            except StoreUnavailable as exc:  # busy, or the task moved meanwhile: next tick
                log.warning("timer.deferred", task_id=due.task_id, error=exc.detail)
            except Exception as exc:
                self._park(due, exc)
        return ended

    def _park(self, due: Due, exc: Exception) -> None:
        """Leave a task whose ending fails out for PARK_SECONDS, loudly, and go on."""
        if len(self._parked) >= MAX_PARKED:
            self._parked.pop(next(iter(self._parked)))
        self._parked[due.task_id] = self.clock() + PARK_SECONDS
        detail = exc.detail if isinstance(exc, JobhookError) else f"{type(exc).__name__}: {exc}"
        log.error(
            "timer.task_parked",
            task_id=due.task_id,
            status=due.status.value,
            error=detail[:500],
            retry_in=PARK_SECONDS,
        )

    async def _end(self, due: Due) -> int:
        status, code, message = _ENDINGS[due.status]
        text = message.format(limit=self._limit(due.status))
        queued = None
        if due.status is Status.NOT_START:
            # A queued task is NOT_START by right until its submit timeout: then it fails as
            # `submit_timeout` with the provider's last answer. One being sent right now is the
            # submitter's to end (its lease runs out if that worker died).
            queued = await self.svc.store.submission(due.task_id)
            if queued is not None and not await self.svc.store.take_submission(
                due.task_id, self.clock(), lease=TAKE_LEASE
            ):
                self._parked[due.task_id] = max(queued.lease_until or 0.0, self.clock() + 1)
                return 0
            if queued is not None:
                code = "submit_timeout"
                text = timed_out(self._limit(due.status), queued.last_answer)
        applied = await self.svc.ingest(
            due.task_id,
            Observation(status=status, source="timer", error=task_error(code, text), detail=text),
        )
        if queued is not None:
            await self.svc.store.finish_submission(due.task_id)
        if applied.decision.applied:
            log.warning("timer.fired", task_id=due.task_id, code=code, status=status.value)
            return 1
        return 0
