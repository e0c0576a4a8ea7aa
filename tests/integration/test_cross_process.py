"""Processes sharing one PostgreSQL database hear each other's commits at once (LISTEN/NOTIFY):
a long-poll, an event stream and a worker in one process are woken by a change another process
commits. Two in-process apps on one database stand for two processes."""

from __future__ import annotations

import asyncio

import httpx

from service.config import Settings
from service.hub import Hub
from service.services import start_following
from service.store.base import open_store
from tests.conftest import open_app
from tests.integration.test_api_tasks import submit
from tests.integration.test_callbacks import SLOW, services
from tests.integration.test_live import _events, _stream
from tests.support.wait import eventually

#: A receiver on loopback that refuses at once (the discard port): webhooks are really attempted
#: by the in-process deliverer, so they must never leave this machine.
NOWHERE = "http://127.0.0.1:9/hooks"
#: Longer than any test here waits: a long-poll that returns sooner was woken by a notice.
LONG = 30


async def test_a_commit_in_one_process_wakes_a_long_poll_and_a_stream_in_another(
    pg_settings: Settings,
) -> None:
    async for a in open_app(pg_settings):
        async for b in open_app(pg_settings, workers=False):
            await _woken_across(a, b)


async def _woken_across(a: httpx.AsyncClient, b: httpx.AsyncClient) -> None:
    task = await submit(a, SLOW)  # the simulator leaves it alone: only we change it
    waiting = asyncio.create_task(b.get(f"/v1/tasks/{task['id']}", params={"wait": LONG}))
    running, chunks, gone = await _stream(b, f"task_id={task['id']}".encode())
    hub = services(b).hub
    await eventually(lambda: hub.streams > 0)
    assert (await a.post(f"/v1/tasks/{task['id']}/cancel")).status_code == 200
    # Both return long before LONG: woken by the notice, not by a timer.
    r = await asyncio.wait_for(waiting, LONG / 3)
    assert r.json()["status"] == "CANCEL"
    await eventually(lambda: "CANCEL" in [e["status"] for e in _events(chunks)])
    assert _events(chunks)[-1]["status"] == "CANCEL"
    gone.set()
    await asyncio.wait_for(running, timeout=10)


async def test_notices_wake_another_process_workers(pg_settings: Settings) -> None:
    store = open_store(pg_settings.database_url)
    await store.open()
    hub = Hub()
    polls: list[float] = []
    deliveries: list[bool] = []
    hub.poll_listeners.append(polls.append)
    hub.delivery_listeners.append(lambda: deliveries.append(True))
    following = await start_following(store, hub)
    try:
        async for a in open_app(pg_settings):
            r = await a.post("/v1/endpoints", json={"url": NOWHERE})
            assert r.status_code == 201
            task = await submit(a, {"provider": "simulator-apimart", **SLOW})
            await a.post(f"/v1/tasks/{task['id']}/cancel")  # announced: an outbox row
            await eventually(lambda: bool(polls and deliveries))
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await store.close()
    assert polls and deliveries
