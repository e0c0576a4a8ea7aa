"""Submissions never bill twice, obey Retry-After, and act only on the caller's own tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from service.config import Settings
from tests.conftest import open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.integration.test_faults import sim

APIMART = {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "x"}}
APIFRAME = {"action": "imagine", "params": {"prompt": "x"}}


def posts(client: httpx.AsyncClient, route: str) -> int:
    return sim(client).request_counts[route]


async def test_a_5xx_from_a_provider_without_idempotency_is_not_resent(
    client: httpx.AsyncClient,
) -> None:
    sim(client).faults.configure({"errors": 1, "path_prefix": "/v1/midjourney/generations"})
    r = await client.post("/v1/tasks", json=APIMART)
    body = assert_problem(r, 502)
    assert posts(client, "POST /v1/midjourney/generations/{action}") == 1
    kept = (await client.get(f"/v1/tasks/{body['task_id']}")).json()
    assert kept["status"] == "FAILURE" and kept["error"]["code"] == "provider_unavailable"


async def test_a_provider_honouring_idempotency_keys_is_resent(client: httpx.AsyncClient) -> None:
    sim(client).faults.configure({"errors": 1, "path_prefix": "/v2/images"})
    task = await submit(client, APIFRAME)
    assert task["status"] == "SUBMITTED"
    assert posts(client, "POST /v2/images/generate") == 2


async def test_a_429_is_waited_out_then_resent(client: httpx.AsyncClient) -> None:
    sim(client).faults.configure(
        {"rate_limit": 1, "retry_after": 1, "path_prefix": "/v1/midjourney/generations"}
    )
    task = await submit(client, APIMART)
    assert task["status"] == "SUBMITTED"
    assert posts(client, "POST /v1/midjourney/generations/{action}") == 2


async def test_a_long_retry_after_queues_the_task(client: httpx.AsyncClient) -> None:
    """Issue 13: a busy provider never fails a task: it waits in the submission queue, with
    the provider's answer kept, and is sent once the Retry-After has passed."""
    sim(client).faults.configure(
        {"rate_limit": 1, "retry_after": 30, "path_prefix": "/v1/midjourney/generations"}
    )
    r = await client.post("/v1/tasks", json=APIMART)
    assert r.status_code == 202, r.text
    task = r.json()
    assert task["status"] == "NOT_START" and task["queued"] is True
    store = client.app.state.services.store  # type: ignore[attr-defined]
    queued = await store.submission(task["id"])
    assert queued is not None and "rate limiting jobhook (HTTP 429)" in queued.last_answer
    assert posts(client, "POST /v1/midjourney/generations/{action}") == 1


async def test_a_replay_while_the_first_is_in_flight_is_409(client: httpx.AsyncClient) -> None:
    sim(client).faults.configure(
        {"hang": 1, "hang_seconds": 0.5, "path_prefix": "/v1/midjourney/generations"}
    )
    key = {"Idempotency-Key": "slow-1"}
    first = asyncio.create_task(client.post("/v1/tasks", json=APIMART, headers=key))
    await asyncio.sleep(0.1)
    assert_problem(await client.post("/v1/tasks", json=APIMART, headers=key), 409)
    assert (await first).status_code == 202
    again = await client.post("/v1/tasks", json=APIMART, headers=key)
    assert again.status_code == 202 and again.json()["id"] == (await first).json()["id"]


@pytest.fixture
async def two_owners(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    keyed = replace(
        settings,
        api_keys={"alice-key-123": "alice", "bob-key-4567": "bob"},
        simulator=True,
    )
    async for c in open_app(keyed):
        yield c


async def test_another_owners_provider_task_cannot_be_followed_up(
    two_owners: httpx.AsyncClient,
) -> None:
    alice = {"Authorization": "Bearer alice-key-123"}
    bob = {"Authorization": "Bearer bob-key-4567"}
    grid = await finished(
        two_owners, (await submit(two_owners, APIMART, headers=alice))["id"], headers=alice
    )
    body = {
        "provider": "simulator-apimart",
        "action": "upscale",
        "params": {"task_id": grid["provider_task_id"], "index": 1},
    }
    assert_problem(
        await two_owners.post("/v1/tasks", json=body, headers=bob), 422, "params.task_id"
    )
    assert (await two_owners.post("/v1/tasks", json=body, headers=alice)).status_code == 202
