"""Notifications out: signed Standard Webhooks to a real receiver on loopback, retried on a
time-compressed schedule, ordered per task and endpoint, dead-lettered and re-sent."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook

from service.config import Settings
from service.services import Services
from service.workers.deliverer import SCHEDULE, Deliverer, DelivererConfig
from tests.conftest import both_stores, open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.support.receiver import Receiver, free_port, running


class Clock:
    """Real time plus an offset that tests move forward: days pass in microseconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
async def quiet(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app without background workers: tests drive a deliverer on their own clock."""
    async for c in open_app(settings, workers=False):
        yield c


def svc(client: httpx.AsyncClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def deliverer(client: httpx.AsyncClient, clock: Clock, **config: Any) -> Deliverer:
    s = svc(client)
    return Deliverer(s, s.guard, DelivererConfig(**config), clock=clock, rng=random.Random(1))


async def drain(d: Deliverer, rounds: int = 20) -> None:
    """Deliver everything due now, round after round, until nothing more is due."""
    for _ in range(rounds):
        started = await d.deliver_due()
        await d.settle()
        if not started:
            return


def verify(secret: str, got: Any) -> dict[str, Any]:
    """Both public verifiers accept the delivery; returns the payload."""
    headers = {k: v for k, v in got.headers.items() if k.startswith("webhook-")}
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(got.body, headers)
    SvixWebhook(secret).verify(
        got.body, {k.replace("webhook", "svix"): v for k, v in headers.items()}
    )
    return payload


@both_stores
async def test_task_callbacks_are_signed_and_verifiable(client: httpx.AsyncClient) -> None:
    """The embedded deliverer, real time: succeeded, failed and cancelled reach the backend."""
    async with running(Receiver(free_port())) as backend:
        hook = {"callback_url": backend.url()}
        ok = await finished(
            client,
            (await submit(client, {"action": "imagine", "params": {"prompt": "a"}} | hook))["id"],
        )
        bad = await finished(
            client,
            (await submit(client, {"action": "imagine", "params": {"prompt": "b [fail]"}} | hook))[
                "id"
            ],
        )
        slow = await submit(client, {"action": "imagine", "params": {"prompt": "c [never]"}} | hook)
        await client.post(f"/v1/tasks/{slow['id']}/cancel")
        for _ in range(200):
            done = await client.get("/v1/deliveries", params={"status": "delivered"})
            if len(done.json()["data"]) >= 3:
                break
            await client.get(f"/v1/tasks/{ok['id']}", params={"wait": 0.05})
        secret = svc(client).settings.webhook_secret or ""
        got = {verify(secret, r)["data"]["id"]: verify(secret, r) for r in backend.received}
        assert got[ok["id"]]["type"] == "task.succeeded"
        assert got[ok["id"]]["data"]["result"]["images"] == ok["result"]["images"]
        assert got[bad["id"]]["type"] == "task.failed"
        assert got[slow["id"]]["type"] == "task.cancelled"
        assert all(isinstance(p["data"]["sequence"], int) for p in got.values())
        deliveries = (await client.get("/v1/deliveries", params={"status": "delivered"})).json()
        assert len(deliveries["data"]) == 3


async def test_modal_is_announced(client: httpx.AsyncClient) -> None:
    async with running(Receiver(free_port())) as backend:
        grid = await finished(
            client,
            (
                await submit(
                    client,
                    {
                        "provider": "simulator-apimart",
                        "action": "imagine",
                        "params": {"prompt": "x"},
                    },
                )
            )["id"],
        )
        up = await finished(
            client,
            (
                await submit(
                    client, {"action": "upscale", "parent_id": grid["id"], "params": {"index": 1}}
                )
            )["id"],
        )
        task = await submit(
            client,
            {
                "action": "inpaint",
                "parent_id": up["id"],
                "params": {},
                "callback_url": backend.url(),
            },
        )
        for _ in range(100):
            if backend.received:
                break
            # ?wait answers a MODAL task at once: real time must pass for the deliverer.
            await asyncio.sleep(0.05)
        assert (await client.get(f"/v1/tasks/{task['id']}")).json()["status"] == "MODAL"
        payload = verify(svc(client).settings.webhook_secret or "", backend.received[0])
        assert payload["type"] == "task.modal" and payload["data"]["status"] == "MODAL"


@both_stores
async def test_endpoints_sign_with_their_own_secret(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with running(Receiver(free_port())) as backend:
        r = await quiet.post(
            "/v1/endpoints", json={"url": backend.url("/ep"), "events": ["task.succeeded"]}
        )
        assert r.status_code == 201
        endpoint = r.json()
        assert endpoint["secret"].startswith("whsec_")
        listed = (await quiet.get("/v1/endpoints")).json()["data"]
        assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
        await finished(
            quiet, (await submit(quiet, {"action": "imagine", "params": {"prompt": "a"}}))["id"]
        )
        await drain(deliverer(quiet, clock))
        [got] = backend.received
        assert verify(endpoint["secret"], got)["type"] == "task.succeeded"

        # Rotation: for 24 h both secrets sign, so receivers holding either still verify.
        rotated = (await quiet.post(f"/v1/endpoints/{endpoint['id']}/rotate-secret")).json()
        await finished(
            quiet, (await submit(quiet, {"action": "imagine", "params": {"prompt": "b"}}))["id"]
        )
        await drain(deliverer(quiet, clock))
        verify(endpoint["secret"], backend.received[1])
        verify(rotated["secret"], backend.received[1])

        assert (await quiet.delete(f"/v1/endpoints/{endpoint['id']}")).status_code == 204
        assert_problem(await quiet.get(f"/v1/endpoints/{endpoint['id']}"), 404)
        await finished(
            quiet, (await submit(quiet, {"action": "imagine", "params": {"prompt": "c"}}))["id"]
        )
        await drain(deliverer(quiet, clock))
        assert len(backend.received) == 2


async def test_a_receiver_down_for_the_whole_schedule_is_dead_lettered_then_retried(
    quiet: httpx.AsyncClient,
) -> None:
    clock = Clock()
    backend = Receiver(free_port())  # not listening yet: every attempt is refused
    task = await submit(
        quiet, {"action": "imagine", "params": {"prompt": "a"}, "callback_url": backend.url()}
    )
    await finished(quiet, task["id"])
    d = deliverer(quiet, clock)
    attempts = 0
    for delay in (*SCHEDULE[1:], SCHEDULE[-1]):
        attempts += await d.deliver_due()
        assert await d.deliver_due() == 0  # nothing is due again before its time
        clock.advance(delay * 1.25)
    assert attempts == len(SCHEDULE)
    [dead] = (await quiet.get("/v1/deliveries", params={"status": "dead"})).json()["data"]
    assert dead["attempts"] == len(SCHEDULE) and "ConnectError" in dead["last_error"]

    async with running(backend):
        r = await quiet.post(f"/v1/deliveries/{dead['id']}/retry")
        assert r.status_code == 202 and r.json()["status"] == "pending"
        await drain(d)
        [got] = backend.received
        assert got.headers["webhook-id"] == dead["id"]  # stable across retries: receivers dedupe
        assert verify(svc(quiet).settings.webhook_secret or "", got)["type"] == "task.succeeded"
    assert_problem(await quiet.post("/v1/deliveries/msg_nope/retry"), 404)

    # GET /v1/deliveries/{id}: the exact signed body and every attempt kept (issue 15)
    detail = (await quiet.get(f"/v1/deliveries/{dead['id']}")).json()
    assert detail["status"] == "delivered" and detail["body"].encode() == got.body
    history = detail["attempt_history"]
    assert len(history) == len(SCHEDULE) + 1  # ten refused, then the retry that went through
    assert all("ConnectError" in a["error"] and a["http_status"] is None for a in history[:-1])
    assert history[-1]["http_status"] == 200 and history[-1]["error"] is None
    assert history[-1]["attempt"] == 1 and all(a["duration_ms"] >= 0 for a in history)
    assert_problem(await quiet.get("/v1/deliveries/msg_nope"), 404)


async def test_410_disables_the_endpoint_and_it_can_be_enabled(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with running(Receiver(free_port())) as backend:
        backend.script.append(410)
        endpoint = (await quiet.post("/v1/endpoints", json={"url": backend.url()})).json()
        await finished(
            quiet, (await submit(quiet, {"action": "imagine", "params": {"prompt": "a"}}))["id"]
        )
        await drain(deliverer(quiet, clock))
        got = (await quiet.get(f"/v1/endpoints/{endpoint['id']}")).json()
        assert got["disabled"] and "410" in got["disabled_reason"]
        statuses = {d["status"] for d in (await quiet.get("/v1/deliveries")).json()["data"]}
        assert statuses == {"dead"}
        enabled = (await quiet.post(f"/v1/endpoints/{endpoint['id']}/enable")).json()
        assert not enabled["disabled"]


async def test_an_endpoint_failing_for_five_days_is_disabled(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with running(Receiver(free_port())) as backend:
        backend.script.extend([500] * 100)
        endpoint = (await quiet.post("/v1/endpoints", json={"url": backend.url()})).json()
        d = deliverer(quiet, clock)
        for _ in range(6):  # a new task each day, every delivery failing
            await submit(quiet, {"action": "imagine", "params": {"prompt": "x [fail]"}})
            for _ in range(24):
                clock.advance(3600)
                await drain(d)
        got = (await quiet.get(f"/v1/endpoints/{endpoint['id']}")).json()
        assert got["disabled"] and "5 days" in got["disabled_reason"]


async def test_redirects_are_failures_and_retry_after_is_honoured(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with running(Receiver(free_port())) as backend:
        backend.script.extend(
            [(302, {"location": backend.url("/elsewhere")}), (503, {"retry-after": "7200"})]
        )
        task = await submit(
            quiet, {"action": "imagine", "params": {"prompt": "a"}, "callback_url": backend.url()}
        )
        await finished(quiet, task["id"])
        d = deliverer(quiet, clock)
        assert await d.deliver_due() == 1
        [first] = (await quiet.get("/v1/deliveries")).json()["data"]
        assert first["last_status"] == 302 and first["status"] == "pending"
        assert [r.path for r in backend.received] == ["/hooks"]  # the redirect was not followed
        clock.advance(SCHEDULE[1] * 1.25)
        assert await d.deliver_due() == 1  # 503 with Retry-After: 2 h
        clock.advance(SCHEDULE[2] * 1.25)  # the schedule alone would try again after ~5 min
        assert await d.deliver_due() == 0
        clock.advance(7200)
        assert await d.deliver_due() == 1
        assert len(backend.received) == 3


async def test_per_task_order_is_kept_when_an_early_event_fails(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with running(Receiver(free_port())) as backend:
        backend.script.append(500)  # the first event's first attempt fails
        events = ["task.submitted", "task.progress", "task.succeeded"]
        task = await submit(
            quiet,
            {
                "action": "imagine",
                "params": {"prompt": "a"},
                "callback_url": backend.url(),
                "callback_events": events,
            },
        )
        await finished(quiet, task["id"])
        d = deliverer(quiet, clock)
        await drain(d)
        assert len(backend.received) == 1  # later events wait behind the failed first one
        clock.advance(SCHEDULE[1] * 1.25)
        await drain(d)
        sequences = [orjson.loads(r.body)["data"]["sequence"] for r in backend.received]
        assert sequences[1:] == sorted(sequences[1:]) and sequences[0] == sequences[1]
        assert len(sequences) == 6  # submitted, three progress, succeeded, plus one retry


async def test_one_slow_receiver_cannot_starve_the_others(quiet: httpx.AsyncClient) -> None:
    clock = Clock()
    async with (
        running(Receiver(free_port(), delay=0.3)) as slow,
        running(Receiver(free_port())) as fast,
    ):
        for url in (slow.url(), fast.url()):
            await quiet.post("/v1/endpoints", json={"url": url, "events": ["task.succeeded"]})
        for i in range(4):
            await finished(
                quiet,
                (await submit(quiet, {"action": "imagine", "params": {"prompt": f"t{i}"}}))["id"],
            )
        d = deliverer(quiet, clock, concurrency=4, per_endpoint=2)
        await d.deliver_due(wait=False)
        assert d._inflight[slow.url()] == 2 and d._inflight[fast.url()] == 2
        await d.settle()
        await drain(d, rounds=50)
        assert len(fast.received) == 4 and len(slow.received) == 4


async def test_endpoint_urls_are_checked(quiet: httpx.AsyncClient) -> None:
    for url, field in (("http://10.0.0.1/h", "url"), ("ftp://x/h", "url"), (None, "url")):
        assert_problem(await quiet.post("/v1/endpoints", json={"url": url}), 422, field)
    assert_problem(
        await quiet.post("/v1/endpoints", json={"url": "https://example.com/h", "events": ["x"]}),
        422,
        "events",
    )
    assert_problem(await quiet.get("/v1/deliveries", params={"status": "lost"}), 422, "status")
