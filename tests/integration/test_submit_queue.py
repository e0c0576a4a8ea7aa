"""A busy provider never fails a task (issue 13): the durable submission queue end to end.

The burst: 200 imagines against a simulator that runs at most 3 jobs at once all end SUCCESS,
never more than 3 in flight at the simulator, across a restart of the workers in the middle.
Then the edges: the owner's bound (429 + Retry-After), ?wait on the POST, a provider that keeps
answering 429 (submit_timeout, with its last answer), and an ambiguous failure at a provider
without idempotency keys (submit_unknown, never resent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from service import bench_jobs
from service.config import Settings
from service.services import Services, open_services
from service.store.base import Store
from service.submit import submit_queued
from service.workers.runner import Workers
from tests.conftest import open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.integration.test_faults import sim

IMAGINE = {"action": "imagine", "params": {"prompt": "a fox"}}
#: a job the simulator never finishes: it holds its slot for the whole test
HOLD = {"action": "imagine", "params": {"prompt": "a fox [never]"}}
APIMART = {"provider": "simulator-apimart", **IMAGINE}
APIMART_HOLD = {"provider": "simulator-apimart", **HOLD}
TERMINAL = ("SUCCESS", "FAILURE", "CANCEL")


def services(client: httpx.AsyncClient) -> Services:
    svc: Services = client.app.state.services  # type: ignore[attr-defined]
    return svc


async def counts(store: Store) -> dict[str, int]:
    stats = await store.stats(time.time())
    found: dict[str, int] = {}
    for (_, status), n in stats.tasks.items():
        found[status] = found.get(status, 0) + n
    return found


async def until(store: Store, done: Any, timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        now = await counts(store)
        if done(now):
            return now
        assert time.monotonic() < deadline, f"gave up waiting: {now}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """jobhook capped at 3 jobs in flight at the simulator; the simulator itself refuses a 4th
    (429); the workers are the test's to start and stop."""
    capped = replace(settings, provider_concurrency={"simulator": 3})
    async for client in open_app(capped, workers=False):
        sim(client).faults.configure({"concurrency": {"apiframe": 3}})
        yield client


async def test_a_burst_of_200_at_a_cap_of_3_all_succeed_across_a_restart(
    capped: httpx.AsyncClient,
) -> None:
    svc = services(capped)
    workers = Workers(svc)
    await workers.start()
    answers = [await submit(capped, IMAGINE) for _ in range(200)]
    statuses = [a["status"] for a in answers]
    assert statuses[:3] == ["SUBMITTED"] * 3  # room at first: sent before the answer
    assert statuses.count("NOT_START") >= 100
    assert all(a["queued"] == (a["status"] == "NOT_START") for a in answers)
    # Restart the workers in the middle: the queue is in the store, nothing is lost.
    await until(svc.store, lambda c: c.get("SUCCESS", 0) >= 60, timeout=60)
    await workers.stop()
    middle = await counts(svc.store)
    assert middle.get("NOT_START", 0) > 0
    workers = Workers(svc)
    await workers.start()
    try:
        done = await until(svc.store, lambda c: c.get("SUCCESS", 0) == 200, timeout=100)
    finally:
        await workers.stop()
    assert done == {"SUCCESS": 200}
    faults = sim(capped).faults
    assert faults.peak_running["apiframe"] == 3  # the cap was used, and never passed
    assert (
        faults.injected["concurrency"] == 0
    )  # jobhook kept to it: the simulator never had to refuse
    assert await svc.store.queue_depths(time.time()) == {}
    # The queue is visible: the task says it waited, /metrics counts the sends.
    metrics = (await capped.get("/metrics")).text
    assert 'jobhook_queued_submissions_total{provider="simulator",result="submitted"}' in metrics


async def test_the_burst_on_postgresql_with_two_workers(pg_settings: Settings) -> None:
    """Two worker processes (two stores, pools and submitters on one database) share the cap:
    the count of jobs in flight and the claims it allows are one step under an advisory lock."""
    capped = replace(pg_settings, provider_concurrency={"simulator": 3})
    async for client in open_app(capped, workers=False):
        sim(client).faults.configure({"concurrency": {"apiframe": 3}})
        svc = services(client)
        transport = svc.http._transport
        async with open_services(
            svc.settings, public_url=svc.public_url, transport=transport
        ) as other:
            one, two = Workers(svc), Workers(other)
            await one.start()
            await two.start()
            try:
                for _ in range(200):
                    await submit(client, IMAGINE)
                await until(svc.store, lambda c: c.get("SUCCESS", 0) >= 60, timeout=60)
                await one.stop()  # one worker restarts; the other goes on meanwhile
                one = Workers(svc)
                await one.start()
                done = await until(svc.store, lambda c: c.get("SUCCESS", 0) == 200, timeout=100)
            finally:
                await one.stop()
                await two.stop()
        assert done == {"SUCCESS": 200}
        faults = sim(client).faults
        assert faults.peak_running["apiframe"] == 3
        assert faults.injected["concurrency"] == 0


async def test_429s_from_the_provider_are_retried_until_it_takes_the_task(
    settings: Settings,
) -> None:
    """No cap of jobhook's own: the simulator's 429s past its cap send tasks back to the queue
    (backoff, Retry-After) until it has room; none fails."""
    async for client in open_app(settings):
        sim(client).faults.configure({"concurrency": {"apiframe": 2}})
        answers = [await submit(client, IMAGINE) for _ in range(8)]
        ended = [await finished(client, a["id"]) for a in answers]
        assert [t["status"] for t in ended] == ["SUCCESS"] * 8
        assert sim(client).faults.injected["concurrency"] > 0
        assert sim(client).faults.peak_running["apiframe"] <= 2


async def test_wait_on_the_post_answers_once_the_provider_took_the_task(
    capped: httpx.AsyncClient,
) -> None:
    svc = services(capped)
    first = [await submit(capped, IMAGINE) for _ in range(3)]
    assert all(t["status"] == "SUBMITTED" for t in first)
    workers = Workers(svc)
    await workers.start()
    try:
        task = await submit(capped, IMAGINE, params={"wait": 30})
        assert task["status"] != "NOT_START" and task["queued"] is False
        assert task["provider_task_id"]
    finally:
        await workers.stop()


async def test_an_owner_beyond_its_queue_bound_gets_429(settings: Settings) -> None:
    bounded = replace(settings, provider_concurrency={"simulator": 1}, queue_per_owner=2)
    async for client in open_app(bounded, workers=False):
        assert (await submit(client, HOLD))["status"] == "SUBMITTED"
        assert [(await submit(client, IMAGINE))["status"] for _ in range(2)] == ["NOT_START"] * 2
        r = await client.post("/v1/tasks", json=IMAGINE)
        problem = assert_problem(r, 429)
        assert "JOBHOOK_QUEUE_PER_OWNER" in problem["detail"]
        assert int(r.headers["retry-after"]) > 0
        # The queue shows in /readyz and /metrics.
        ready = (await client.get("/readyz")).json()
        assert ready["submit_queue"]["simulator"]["waiting"] == 2
        assert ready["submit_queue"]["simulator"]["concurrency"] == 1
        metrics = (await client.get("/metrics")).text
        assert 'jobhook_submit_queue_depth{provider="simulator"} 2' in metrics
        assert 'jobhook_submit_queue_wait_seconds{provider="simulator"}' in metrics


async def test_a_cancelled_queued_task_leaves_the_queue(capped: httpx.AsyncClient) -> None:
    svc = services(capped)
    for _ in range(3):
        await submit(capped, HOLD)
    task = await submit(capped, IMAGINE)
    assert task["queued"]
    r = await capped.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCEL" and r.json()["queued"] is False
    assert await svc.store.submission(task["id"]) is None
    assert await svc.store.queue_depths(time.time()) == {}  # the other three were sent at once


async def test_a_replay_of_a_queued_task_answers_with_it(capped: httpx.AsyncClient) -> None:
    for _ in range(3):
        await submit(capped, HOLD)
    key = {"Idempotency-Key": "queued-1"}
    task = await submit(capped, IMAGINE, headers=key)
    assert task["queued"]
    r = await capped.post("/v1/tasks", json=IMAGINE, headers=key)
    assert r.status_code == 202 and r.headers["idempotent-replayed"] == "true"
    assert r.json()["id"] == task["id"] and r.json()["queued"]


async def test_a_provider_that_keeps_refusing_ends_in_submit_timeout(settings: Settings) -> None:
    quick = replace(settings, submit_timeout=1.5)
    async for client in open_app(quick):
        sim(client).faults.configure({"rate_limit": 10_000, "retry_after": 0.1})
        task = await submit(client, IMAGINE)
        assert task["status"] == "NOT_START" and task["queued"]
        ended = await finished(client, task["id"])
        assert ended["status"] == "FAILURE"
        assert ended["error"]["code"] == "submit_timeout"
        assert "rate limiting jobhook" in ended["error"]["message"]
        store = services(client).store
        for _ in range(100):  # the row goes right after the ending's commit
            if await store.submission(task["id"]) is None:
                break
            await asyncio.sleep(0.02)
        assert await store.submission(task["id"]) is None


async def test_an_ambiguous_failure_without_idempotency_is_submit_unknown(
    settings: Settings,
) -> None:
    capped = replace(settings, provider_concurrency={"simulator-apimart": 1})
    async for client in open_app(capped, workers=False):
        svc = services(client)
        assert (await submit(client, APIMART_HOLD))["status"] == "SUBMITTED"
        task_id = (await submit(client, APIMART))["id"]
        sim(client).faults.configure({"errors": 1, "path_prefix": "/v1/midjourney/generations"})
        [claim] = await svc.store.claim_submissions(
            "simulator-apimart", time.time(), cap=None, limit=5, lease=30
        )
        assert claim.task_id == task_id
        provider = svc.providers["simulator-apimart"]
        assert await submit_queued(svc, provider, claim) == "submit_unknown"
        task = (await client.get(f"/v1/tasks/{task_id}")).json()
        assert task["status"] == "FAILURE" and task["error"]["code"] == "submit_unknown"
        assert "not sent again" in task["error"]["message"]
        posts = sim(client).request_counts["POST /v1/midjourney/generations/{action}"]
        assert posts == 2  # the first task, and this one once: never resent


async def test_a_send_interrupted_by_a_crash_is_not_resent_blindly(settings: Settings) -> None:
    capped = replace(settings, provider_concurrency={"simulator-apimart": 1})
    async for client in open_app(capped, workers=False):
        svc = services(client)
        await submit(client, APIMART_HOLD)
        task_id = (await submit(client, APIMART))["id"]
        await svc.store.claim_submissions(
            "simulator-apimart", time.time(), cap=None, limit=5, lease=0.01
        )
        await asyncio.sleep(0.05)  # that worker died mid-send: its lease ran out
        [claim] = await svc.store.claim_submissions(
            "simulator-apimart", time.time(), cap=None, limit=5, lease=30
        )
        assert claim.reclaimed
        provider = svc.providers["simulator-apimart"]
        assert await submit_queued(svc, provider, claim) == "submit_unknown"
        task = (await client.get(f"/v1/tasks/{task_id}")).json()
        assert task["error"]["code"] == "submit_unknown"


def test_the_queue_bench_runs_and_compares_with_the_ideal() -> None:
    lines: list[str] = []
    assert bench_jobs.run(["queue"], quick=True, out=lines.append) == 0
    text = "\n".join(lines)
    assert "60 queued imagines at a cap of 10" in text and "ideal: jobs x" in text
