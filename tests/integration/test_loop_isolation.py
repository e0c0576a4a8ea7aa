"""One bad task never stalls a background loop for everyone: it is logged and parked, and every
other tenant's timers, polls and deliveries go on."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import httpx
from structlog.testing import capture_logs

from service.domain.ids import new_id
from service.domain.models import DEFAULT_CALLBACK_EVENTS, Observation
from service.domain.status import Status
from service.services import Services
from service.store.base import NewTask, TimerLimits
from service.workers.timers import PARK_SECONDS, Timers
from tests.integration.test_callbacks import services

#: A receiver on loopback that refuses at once (the discard port): webhooks are really attempted
#: by the in-process deliverer, so they must never leave this machine.
NOWHERE = "http://127.0.0.1:9/hooks"
#: Nested past what orjson can write (254): data stored before jobhook bounded its input.
POISON = '{"a":' * 300 + "1" + "}" * 300


async def modal_task(svc: Services, owner: str) -> str:
    task_id = new_id("task")
    await svc.store.create_task(
        NewTask(
            id=task_id,
            owner=owner,
            provider="simulator-apimart",
            action="inpaint",
            params={},
            # a subscriber: announcing a change writes the task into a webhook body
            callback_url=NOWHERE,
            callback_events=DEFAULT_CALLBACK_EVENTS,
        )
    )
    obs = Observation(status=Status.MODAL, source="poll", provider_task_id=f"p-{task_id}")
    await svc.ingest(task_id, obs)
    return task_id


async def test_a_poisoned_task_never_delays_another_tenants_timer(
    client: httpx.AsyncClient,
) -> None:
    svc = services(client)
    poisoned = await modal_task(svc, "mallory")
    healthy = await modal_task(svc, "alice")
    path = svc.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET metadata = ? WHERE id = ?", (POISON, poisoned))
    now = [time.time() + 1]
    timers = Timers(
        svc, TimerLimits(modal=0.5, submit=1e6, queue=1e6, run=1e6), clock=lambda: now[0]
    )

    with capture_logs() as logs:
        assert await timers.fire() == 1
    assert (await svc.store.get_task(healthy, owner=None))["status"] == "CANCEL"  # type: ignore[index]
    assert (await svc.store.get_task(poisoned, owner=None))["status"] == "MODAL"  # type: ignore[index]
    (parked,) = [e for e in logs if e["event"] == "timer.task_parked"]
    assert parked["task_id"] == poisoned and parked["log_level"] == "error"

    # Parked: the next ticks leave it out (it cannot fill the batch and starve the rest) ...
    late = await modal_task(svc, "bob")
    now[0] += 5
    with capture_logs() as logs:
        assert await timers.fire() == 1
    assert not [e for e in logs if e["event"] == "timer.task_parked"]
    assert (await svc.store.get_task(late, owner=None))["status"] == "CANCEL"  # type: ignore[index]

    # ... until its parking ends, when it is tried (and parked) again.
    now[0] += PARK_SECONDS + 1
    with capture_logs() as logs:
        assert await timers.fire() == 0
    assert [e["task_id"] for e in logs if e["event"] == "timer.task_parked"] == [poisoned]


async def test_the_timer_loop_keeps_running_when_the_store_fails(
    client: httpx.AsyncClient,
) -> None:
    svc = services(client)
    timers = Timers(svc, TimerLimits(modal=1, submit=1, queue=1, run=1), interval=0.01)
    calls = 0
    real = svc.store.due_timers

    async def failing(*args: object, **kwargs: object) -> list[object]:
        nonlocal calls
        calls += 1
        raise RuntimeError("disk on fire")

    svc.store.due_timers = failing  # type: ignore[method-assign]
    try:
        with capture_logs() as logs:
            runner = asyncio.create_task(timers.run())
            for _ in range(500):
                if calls >= 3:
                    break
                await asyncio.sleep(0.01)
            await timers.stop()
            await runner
    finally:
        svc.store.due_timers = real  # type: ignore[method-assign]
    assert [e["event"] for e in logs].count("timer.loop_error") >= 3
