"""Runs the workers of one process: reschedule what was unfinished, then the submitter, poller,
deliverer and timers."""

from __future__ import annotations

import asyncio
import time

from service.logging import log
from service.services import Services
from service.store.base import TimerLimits
from service.workers.deliverer import Deliverer
from service.workers.poller import DEFAULT_POLLER_CONFIG, Poller, PollerConfig
from service.workers.submitter import Submitter
from service.workers.timers import Timers

#: At start-up, unfinished tasks are polled within this many seconds (spread, not a burst).
RESTART_SPREAD = 10.0


class Workers:
    def __init__(self, svc: Services, *, poller: PollerConfig = DEFAULT_POLLER_CONFIG) -> None:
        """`poller`: its concurrency defaults to JOBHOOK_POLL_CONCURRENCY."""
        settings = svc.settings
        self.svc = svc
        self.poller = Poller(svc, poller)
        self.deliverer = Deliverer(svc, svc.guard)
        self.submitter = Submitter(svc)
        self.timers = Timers(
            svc,
            TimerLimits(
                modal=settings.modal_timeout,
                submit=settings.submit_timeout,
                queue=settings.queue_timeout,
                run=settings.run_timeout,
            ),
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        count = await self.svc.store.reschedule_unfinished(time.time(), spread=RESTART_SPREAD)
        self.svc.hub.poll_listeners.append(self.poller.wake)
        self.svc.hub.delivery_listeners.append(self.deliverer.wake)
        self.svc.hub.submit_listeners.append(self.submitter.wake)
        self._tasks = [
            asyncio.create_task(self.submitter.run(), name="jobhook-submitter"),
            asyncio.create_task(self.poller.run(), name="jobhook-poller"),
            asyncio.create_task(self.deliverer.run(), name="jobhook-deliverer"),
            asyncio.create_task(self.timers.run(), name="jobhook-timers"),
        ]
        log.info("workers.started", rescheduled=count)

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self) -> None:
        await self.timers.stop()
        await self.submitter.stop()
        await self.poller.stop()
        await self.deliverer.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.poller.wake in self.svc.hub.poll_listeners:
            self.svc.hub.poll_listeners.remove(self.poller.wake)
        if self.submitter.wake in self.svc.hub.submit_listeners:
            self.svc.hub.submit_listeners.remove(self.submitter.wake)
        if self.deliverer.wake in self.svc.hub.delivery_listeners:
            self.svc.hub.delivery_listeners.remove(self.deliverer.wake)
        log.info("workers.stopped")
