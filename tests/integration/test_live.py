"""Long-poll and the live stream: both wake on commit, end on time, and free their waiters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from service.config import Settings
from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import Status
from service.store.base import NewTask
from service.store.sqlite import SQLiteStore
from service.web import stream
from service.web.limits import Slots
from tests.conftest import open_app
from tests.integration.test_callbacks import services
from tests.support.ingest import apply
from tests.support.wait import eventually


async def quiet_task(client: httpx.AsyncClient) -> str:
    """A task no provider will touch: only this test changes it."""
    svc = services(client)
    task, _ = await svc.store.create_task(
        NewTask(id=new_id("task"), owner="local", provider="simulator", action="imagine", params={})
    )
    await svc.ingest(task["id"], Observation(status=Status.SUBMITTED, source="api"))
    return str(task["id"])


async def test_wait_returns_on_the_next_applied_change(client: httpx.AsyncClient) -> None:
    svc = services(client)
    task_id = await quiet_task(client)
    waiting = asyncio.create_task(client.get(f"/v1/tasks/{task_id}", params={"wait": 60}))
    await eventually(lambda: svc.hub.waiting > 0)
    # A duplicate does not end the wait ...
    await svc.ingest(task_id, Observation(status=Status.SUBMITTED, source="poll"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    # ... an applied change does, long before the 60 s are up.
    await svc.ingest(task_id, Observation(status=Status.IN_PROGRESS, source="poll", progress=30))
    r = await asyncio.wait_for(waiting, timeout=10)
    assert r.json()["status"] == "IN_PROGRESS" and r.json()["progress"] == 30
    assert svc.hub.waiting == 0


async def test_wait_ends_after_its_seconds_with_the_task_unchanged(
    client: httpx.AsyncClient,
) -> None:
    task_id = await quiet_task(client)
    r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 0.2})
    assert r.status_code == 200 and r.json()["status"] == "SUBMITTED"


async def test_a_client_that_goes_away_frees_its_waiter(client: httpx.AsyncClient) -> None:
    svc = services(client)
    task_id = await quiet_task(client)
    waiting = asyncio.create_task(client.get(f"/v1/tasks/{task_id}", params={"wait": 60}))
    await eventually(lambda: svc.hub.waiting > 0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert svc.hub.waiting == 0


async def _stream(
    client: httpx.AsyncClient, query: bytes
) -> tuple[asyncio.Task[None], list[bytes], asyncio.Event]:
    """Drive the ASGI app directly: httpx's ASGI transport would wait for the endless body."""
    app = client.app  # type: ignore[attr-defined]
    chunks: list[bytes] = []
    gone = asyncio.Event()
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events/stream",
        "raw_path": b"/v1/events/stream",
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"jobhook.test")],
        "client": ("127.0.0.1", 5000),
        "server": ("jobhook.test", 80),
    }
    return asyncio.create_task(app(scope, receive, send)), chunks, gone


def _events(chunks: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for block in b"".join(chunks).split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                out.append(orjson.loads(line[6:]))
    return out


async def test_the_stream_sends_committed_changes_and_filters(client: httpx.AsyncClient) -> None:
    svc = services(client)
    watched, other = await quiet_task(client), await quiet_task(client)
    running, chunks, gone = await _stream(client, f"task_id={watched}".encode())
    await eventually(lambda: svc.hub.streams > 0)
    await svc.ingest(other, Observation(status=Status.IN_PROGRESS, source="poll"))
    await svc.ingest(watched, Observation(status=Status.IN_PROGRESS, source="poll", progress=10))
    await svc.ingest(watched, Observation(status=Status.IN_PROGRESS, source="poll", progress=5))
    await svc.ingest(watched, Observation(status=Status.SUCCESS, source="poll"))
    await eventually(lambda: len(_events(chunks)) >= 2)
    events = _events(chunks)
    assert [(e["id"], e["status"], e["progress"]) for e in events] == [
        (watched, "IN_PROGRESS", 10),
        (watched, "SUCCESS", 100),
    ]
    assert b"event: task" in b"".join(chunks)
    gone.set()  # the client goes away
    await asyncio.wait_for(running, timeout=10)
    assert svc.hub.streams == 0


async def test_the_stream_checks_its_filters(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/events/stream", params={"status": "DONE"})
    assert r.status_code == 422
    r = await client.get("/v1/events/stream", params={"colour": "red"})
    assert r.status_code == 422


@pytest.fixture
async def web_only(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The web process of `serve --no-workers`: its workers run elsewhere."""
    async for c in open_app(settings, workers=False):
        yield c


async def test_changes_committed_by_another_process_reach_waiters(
    web_only: httpx.AsyncClient,
) -> None:
    """The web process learns of a separate worker's commits from its change feed."""
    svc = services(web_only)
    task_id = await quiet_task(web_only)
    worker = SQLiteStore(svc.store.path)  # type: ignore[attr-defined]
    await worker.open()
    try:
        waiting = asyncio.create_task(web_only.get(f"/v1/tasks/{task_id}", params={"wait": 60}))
        await eventually(lambda: svc.hub.waiting > 0)
        change = Observation(status=Status.IN_PROGRESS, source="poll", progress=40)
        await apply(worker, task_id, change)
        r = await asyncio.wait_for(waiting, timeout=10)
        assert r.json()["status"] == "IN_PROGRESS" and r.json()["progress"] == 40
    finally:
        await worker.close()


def slots_of(client: httpx.AsyncClient, **limits: int) -> Slots:
    """Smaller limits for a test than the defaults (64 per owner, 1000 in all)."""
    slots = Slots(**limits)
    client.app.state.long_lived = slots  # type: ignore[attr-defined]
    return slots


async def test_long_polls_per_owner_are_capped(client: httpx.AsyncClient) -> None:
    svc = services(client)
    slots = slots_of(client, per_owner=2, total=10)
    task_id = await quiet_task(client)
    waits = [
        asyncio.create_task(client.get(f"/v1/tasks/{task_id}", params={"wait": 60}))
        for _ in range(2)
    ]
    await eventually(lambda: svc.hub.waiting == 2)
    r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 60})
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "5"
    # a look without waiting, and a wait on a task that has ended, hold nothing
    assert (await client.get(f"/v1/tasks/{task_id}")).status_code == 200
    assert (await client.get(f"/v1/tasks/{task_id}", params={"wait": 0})).status_code == 200
    ended = await quiet_task(client)
    await svc.ingest(ended, Observation(status=Status.SUCCESS, source="poll"))
    r = await client.get(f"/v1/tasks/{ended}", params={"wait": 60})
    assert r.status_code == 200 and r.json()["status"] == "SUCCESS"
    # a stream counts against the same slots
    assert (await client.get("/v1/events/stream")).status_code == 429
    await svc.ingest(task_id, Observation(status=Status.IN_PROGRESS, source="poll"))
    for r in await asyncio.wait_for(asyncio.gather(*waits), timeout=10):
        assert r.status_code == 200
    assert slots.in_use == 0
    r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 0.05})
    assert r.status_code == 200


async def test_a_cancelled_long_poll_gives_its_slot_back(client: httpx.AsyncClient) -> None:
    svc = services(client)
    slots = slots_of(client, per_owner=1, total=10)
    task_id = await quiet_task(client)
    waiting = asyncio.create_task(client.get(f"/v1/tasks/{task_id}", params={"wait": 60}))
    await eventually(lambda: svc.hub.waiting > 0)
    assert slots.in_use == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert slots.in_use == 0


async def test_streams_per_owner_are_capped_and_give_their_slot_back(
    client: httpx.AsyncClient,
) -> None:
    svc = services(client)
    slots = slots_of(client, per_owner=1, total=10)
    running, _, gone = await _stream(client, b"")
    await eventually(lambda: svc.hub.streams == 1)
    r = await client.get("/v1/events/stream")
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert "at most 1 per client" in r.json()["detail"]
    gone.set()
    await asyncio.wait_for(running, timeout=10)
    assert slots.in_use == 0 and svc.hub.streams == 0


async def test_a_stream_ends_after_its_lifetime(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reconnects (after `retry:`); nothing is held by a stream that has ended."""
    svc = services(client)
    monkeypatch.setattr(stream, "MAX_LIFETIME", 0.3)
    slots = slots_of(client)
    running, chunks, _ = await _stream(client, b"")
    await asyncio.wait_for(running, timeout=10)  # no disconnect needed
    body = b"".join(chunks)
    assert body.startswith(b"retry: 3000\n") and b"lifetime reached" in body
    assert slots.in_use == 0 and svc.hub.streams == 0


def test_slots_in_all() -> None:
    slots = Slots(per_owner=2, total=3)
    assert slots.acquire("alice") and slots.acquire("alice") and not slots.acquire("alice")
    assert slots.acquire("bob") and not slots.acquire("carol")  # 3 in all
    slots.release("alice")
    assert slots.acquire("carol") and slots.in_use == 3
    slots.release("dave")  # holds nothing: changes nothing
    assert slots.in_use == 3 and slots.held("alice") == 1
