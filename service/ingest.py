"""The one write path: every observation (callback, poll, API call, timer) goes through `ingest`.

The store records the event and applies the state machine's decision in one transaction; after
the commit, ingest logs one line (`task.transition`, or `task.observation` when nothing changed)
and wakes whoever waits on the task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from service.domain.clock import utcnow_iso
from service.domain.models import Observation
from service.domain.plan import Change, Snapshot, plan
from service.domain.schedule import Schedule
from service.hub import Hub
from service.logging import log
from service.metrics import Metrics
from service.store.base import Applied, Planner, Store


class Ingest:
    def __init__(self, store: Store, hub: Hub, metrics: Metrics | None = None) -> None:
        self.store = store
        self.hub = hub
        self.metrics = metrics or Metrics()

    async def __call__(
        self,
        task_id: str,
        obs: Observation,
        *,
        schedule: Schedule | None = None,
        note: Mapping[str, Any] | None = None,
    ) -> Applied:
        """Ingest `obs`; its one log line also carries `note` (what the caller would otherwise
        log on a line of its own, e.g. a callback's size)."""
        started = time.perf_counter()
        applied = await self.store.apply(
            task_id, dedupe_key=obs.dedupe_key, planner=planner(obs, schedule)
        )
        self.metrics.ingest_seconds.observe(time.perf_counter() - started)
        self.metrics.observations.inc(obs.source, applied.decision.outcome)
        if schedule is not None:
            self.hub.poll_scheduled(
                min(schedule.next_poll_at, schedule.idle_next_poll_at or math.inf)
            )
        if applied.deliveries:
            self.hub.deliveries_written()
        decision, task = applied.decision, applied.task
        fields = {
            "task_id": task_id,
            "provider": task["provider"],
            "provider_task_id": task["provider_task_id"],
            "source": obs.source,
            "outcome": decision.outcome,
            "from_status": applied.from_status.value,
            "to_status": obs.status.value if obs.status else None,
            "progress": task["progress"],
            **(note or {}),
        }
        if decision.applied:
            log.info("task.transition", status=task["status"], sequence=task["sequence"], **fields)
            self.hub.publish(task, applied.owner)
        elif decision.outcome in ("conflict", "rejected"):
            log.warning("task.observation", reason=decision.reason, **fields)
        else:
            log.info("task.observation", reason=decision.reason, **fields)
        return applied


def planner(obs: Observation, schedule: Schedule | None = None) -> Planner:
    """The domain's plan for `obs`, run by the store on the snapshot it loads, in its
    transaction (the clock is read there, at the moment of the write)."""

    def planned(snapshot: Snapshot) -> Change:
        return plan(snapshot, obs, schedule=schedule, now=utcnow_iso(), now_epoch=time.time())

    return planned
