"""Applying an observation straight to a store, as ingest does (the domain plans, the store
writes), for store-level tests."""

from __future__ import annotations

from service.domain.models import Observation
from service.domain.schedule import Schedule
from service.ingest import planner
from service.store.base import Applied, Store


async def apply(
    store: Store, task_id: str, obs: Observation, *, schedule: Schedule | None = None
) -> Applied:
    return await store.apply(task_id, dedupe_key=obs.dedupe_key, planner=planner(obs, schedule))
