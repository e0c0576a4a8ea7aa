"""Workers against a real SQLite file: leases, timers, and rescheduling after a restart."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import Status
from service.services import Services
from service.store.base import NewTask, Schedule, TimerLimits
from service.store.sqlite import SQLiteStore
from service.workers.timers import Timers
from tests.integration.test_store_contract import due_tasks
from tests.support.ingest import apply


@pytest.fixture
async def two_stores(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores on one file: two worker processes, as far as SQLite can tell."""
    a, b = SQLiteStore(str(tmp_path / "s.sqlite3")), SQLiteStore(str(tmp_path / "s.sqlite3"))
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def test_nothing_due_means_the_next_due_time(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    a, _ = two_stores
    assert await a.next_poll_due() is None
    [task_id] = await due_tasks(a, 1)
    await a.reschedule(task_id, Schedule(next_poll_at=time.time() + 100, attempts=3))
    due = await a.next_poll_due()
    assert due is not None and due > time.time() + 90


async def test_restart_reschedules_every_unfinished_task(
    two_stores: tuple[SQLiteStore, SQLiteStore],
) -> None:
    a, _ = two_stores
    ids = await due_tasks(a, 5)
    for task_id in ids:
        await a.reschedule(task_id, Schedule(next_poll_at=time.time() + 3600))
    await apply(a, ids[0], Observation(status=Status.SUCCESS, source="poll"))
    now = time.time()
    assert await a.reschedule_unfinished(now, spread=10) == 4
    claims = await a.claim_due_polls(now + 10, limit=10, lease=30)
    assert {c.task_id for c in claims} == set(ids[1:])


def _age(store_path: str, task_id: str, seconds: float) -> None:
    conn = sqlite3.connect(store_path)
    with conn:
        conn.execute(
            "UPDATE tasks SET status_since = status_since - ? WHERE id = ?", (seconds, task_id)
        )
    conn.close()


def services(client: httpx.AsyncClient) -> Services:
    svc: Services = client.app.state.services  # type: ignore[attr-defined]
    return svc


LIMITS = TimerLimits(modal=1800, submit=300, queue=7200, run=3600)


async def test_timers_end_overdue_tasks(client: httpx.AsyncClient) -> None:
    svc = services(client)
    path = svc.store.path  # type: ignore[attr-defined]

    async def made(status: Status | None) -> dict[str, Any]:
        task, _ = await svc.store.create_task(
            NewTask(
                id=new_id("task"), owner="local", provider="simulator", action="imagine", params={}
            )
        )
        if status is not None:
            await svc.ingest(
                task["id"], Observation(status=status, source="poll", provider_task_id=new_id("p"))
            )
        return task

    slow, running, modal, stuck = [
        await made(s) for s in (Status.SUBMITTED, Status.IN_PROGRESS, Status.SUBMITTED, None)
    ]
    await svc.ingest(modal["id"], Observation(status=Status.MODAL, source="poll", progress=15))
    timers = Timers(svc, LIMITS)
    assert await timers.fire() == 0
    _age(path, slow["id"], 7201)
    _age(path, running["id"], 3601)
    _age(path, modal["id"], 1801)
    _age(path, stuck["id"], 301)
    assert await timers.fire() == 4

    async def get(task_id: str) -> dict[str, Any]:
        got: dict[str, Any] = (await client.get(f"/v1/tasks/{task_id}")).json()
        return got

    assert (await get(slow["id"]))["error"]["code"] == "timeout"
    assert (await get(running["id"]))["status"] == "FAILURE"
    cancelled = await get(modal["id"])
    assert cancelled["status"] == "CANCEL" and cancelled["error"]["code"] == "modal_timeout"
    assert (await get(stuck["id"]))["error"]["code"] == "submit_interrupted"
    events = (await client.get(f"/v1/tasks/{modal['id']}/events")).json()["data"]
    timer_events = [e for e in events if e["source"] == "timer"]
    assert [e["outcome"] for e in timer_events] == ["applied"]
    assert await timers.fire() == 0
