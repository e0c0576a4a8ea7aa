"""Timers: tasks that stayed too long in one status end, through ingest like everything else.

MODAL past JOBHOOK_MODAL_TIMEOUT -> CANCEL (the provider cancels and refunds too); NOT_START
past the submit limit (jobhook stopped mid-submission) and SUBMITTED / IN_PROGRESS past the
queue / run deadlines -> FAILURE with error code `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from service.domain.models import Observation, task_error
from service.domain.status import Status
from service.errors import JobhookError
from service.logging import log
from service.services import Services
from service.store.base import Due, TimerLimits

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
        ended = 0
        for due in await self.svc.store.due_timers(self.clock(), self.limits):
            ended += await self._end(due)
        return ended

    async def _end(self, due: Due) -> int:
        status, code, message = _ENDINGS[due.status]
        text = message.format(limit=self._limit(due.status))
        applied = await self.svc.ingest(
            due.task_id,
            Observation(status=status, source="timer", error=task_error(code, text), detail=text),
        )
        if applied.decision.applied:
            log.warning("timer.fired", task_id=due.task_id, code=code, status=status.value)
            return 1
        return 0
