"""Issue 12, items 2, 5, 6 and 8, end to end against the embedded simulator: what providers return
reaches the task and its webhooks; documented constraints are checked before a provider is
called; base64 images go to APIMart and nowhere else; cancel says what the provider did.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.domain.clock import parse_rfc3339
from service.domain.status import Status
from service.errors import ProviderRejected
from service.providers import simulator_key
from service.providers.apimart import ApimartProvider
from service.providers.base import ProviderRequest, ProviderResponse
from service.providers.vtrix import VtrixProvider
from service.services import Services
from service.simulator.png import PNG_SIGNATURE
from tests.conftest import BASE, open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.support.receiver import Receiver, free_port, running

URL = "https://cdn.example.com/a.png"
MASK_URL = "https://cdn.example.com/mask.png"


def svc(client: httpx.AsyncClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


async def events_of(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await client.get(f"/v1/tasks/{task_id}/events")).json()["data"]
    return data


# --- item 2: nothing the provider returns is dropped ------------------------------------------


async def test_describe_prompts_reach_the_task_and_its_webhook(client: httpx.AsyncClient) -> None:
    async with running(Receiver(free_port())) as backend:
        task = await submit(
            client,
            {
                "provider": "simulator-apimart",
                "action": "describe",
                "params": {"image_urls": [URL]},
                "callback_url": backend.url(),
            },
        )
        done = await finished(client, task["id"])
        assert done["status"] == "SUCCESS"
        # The simulator answers as APIMart documents: four suggestions after 1️⃣..4️⃣.
        assert len(done["result"]["prompts"]) == 4
        assert done["result"]["prompts"][0] == "a softly lit studio photo, the subject --ar 1:1"
        assert done["result"]["images"] == [] and done["result"]["grid_url"] is None
        for _ in range(200):
            if backend.received:
                break
            await asyncio.sleep(0.02)
        body = orjson.loads(backend.received[0].body)
    assert body["type"] == "task.succeeded"
    assert body["data"]["result"]["prompts"] == done["result"]["prompts"]


async def test_apiframe_results_say_when_they_expire(client: httpx.AsyncClient) -> None:
    done = await finished(
        client, (await submit(client, {"action": "imagine", "params": {"prompt": "a fox"}}))["id"]
    )
    result = done["result"]
    assert len(result["images"]) == 4 and result["cost"] == {"credits": 16}
    # Apiframe purges results 24 h after the job completed.
    expires = parse_rfc3339(result["expires_at"])
    finished_at = parse_rfc3339(done["finished_at"])
    assert abs(expires - (finished_at + timedelta(hours=24))) < timedelta(seconds=30)
    assert set(result) == {
        "images",
        "grid_url",
        "videos",
        "actions",
        "cost",
        "prompts",
        "expires_at",
        "provider_metadata",
    }


async def test_vtrix_metadata_and_usage_and_a_second_shape_merge_into_the_result(
    client: httpx.AsyncClient,
) -> None:
    """What one answer carries and another does not is kept: a Vtrix task's metadata and usage
    reach the task, and APIMart's expiry (its /v1/tasks shape) joins the buttons and grid of
    its /v1/midjourney shape."""
    async with running(Receiver(free_port())) as backend:
        task = await submit(
            client,
            {
                "provider": "simulator-vtrix",
                "action": "inpaint",
                "params": {"job_id": "mj-1", "index": 1, "prompt": "[never]", "mask_url": MASK_URL},
                "callback_url": backend.url(),
            },
        )
        vtrix = VtrixProvider(api_key="k", name="simulator-vtrix")
        body = {
            "id": task["provider_task_id"],
            "status": "completed",
            "output": [{"content": [{"type": "image", "url": "https://cdn.example.com/1.png"}]}],
            "usage": {"cost": "0.05", "discount": 0},
            "metadata": {"seed": 42, "engine": "mj-7"},
        }
        answer = ProviderResponse(status_code=200, headers={}, body=orjson.dumps(body))
        await svc(client).ingest(task["id"], vtrix.parse_query(answer))
        done = (await client.get(f"/v1/tasks/{task['id']}")).json()
        assert done["status"] == "SUCCESS"
        assert done["result"]["provider_metadata"] == {"seed": 42, "engine": "mj-7"}
        assert done["result"]["cost"] == {"usd": "0.05", "discount": 0}
        for _ in range(200):
            if backend.received:
                break
            await asyncio.sleep(0.02)
        hooked = orjson.loads(backend.received[0].body)
    assert hooked["data"]["result"]["provider_metadata"] == {"seed": 42, "engine": "mj-7"}

    # APIMart: a running task's /v1/midjourney answer (buttons, grid), then /v1/tasks (expiry).
    never = await submit(
        client,
        {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "[never]"}},
    )
    mart = ApimartProvider(api_key="k", name="simulator-apimart")
    pid = never["provider_task_id"]
    running_body = {
        "id": pid,
        "status": "IN_PROGRESS",
        "progress": "99%",
        "grid_image_url": "https://cdn.example.com/g.png",
        "buttons": [{"customId": "MJ::JOB::upsample::1::x", "label": "U1"}],
    }
    done_body = {
        "code": 200,
        "data": {
            "id": pid,
            "status": "completed",
            "progress": 100,
            "result": {"images": [{"url": [URL], "expires_at": 1757242893}]},
        },
    }
    for body in (running_body, done_body):
        answer = ProviderResponse(status_code=200, headers={}, body=orjson.dumps(body))
        await svc(client).ingest(never["id"], mart.parse_query(answer))
    merged = (await client.get(f"/v1/tasks/{never['id']}")).json()["result"]
    assert merged["images"] == [URL] and merged["grid_url"] == "https://cdn.example.com/g.png"
    assert merged["actions"] == [{"label": "U1", "custom_id": "MJ::JOB::upsample::1::x"}]
    assert merged["expires_at"] == "2025-09-07T11:01:33.000Z"


async def test_an_apiframe_webhook_event_name_is_in_the_history(client: httpx.AsyncClient) -> None:
    done = await finished(
        client, (await submit(client, {"action": "imagine", "params": {"prompt": "a fox"}}))["id"]
    )
    events = await events_of(client, done["id"])
    heard = [e["detail"]["provider"]["event"] for e in events if e["source"] == "callback"]
    assert "completed" in heard


# --- item 5: documented constraints, before the provider is called ----------------------------


async def test_vtrix_takes_an_inpaint_without_a_prompt(client: httpx.AsyncClient) -> None:
    task = await submit(
        client,
        {
            "provider": "simulator-vtrix",
            "action": "inpaint",
            "params": {"job_id": "mj-2", "index": 2, "mask_url": MASK_URL},
        },
    )
    assert task["params"] == {"job_id": "mj-2", "index": 2, "mask_url": MASK_URL}
    assert (await finished(client, task["id"]))["status"] == "SUCCESS"


async def test_vtrix_mask_areas_go_through_the_api(client: httpx.AsyncClient) -> None:
    area = {"width": 1024, "height": 768, "points": [10, 10, 500, 10, 500, 500, 10, 500]}
    task = await submit(
        client,
        {
            "provider": "simulator-vtrix",
            "action": "inpaint",
            "params": {"job_id": "mj-4", "index": 1, "prompt": "a hat", "mask_areas": [area]},
        },
    )
    assert task["params"]["mask_areas"] == [area]
    assert (await finished(client, task["id"]))["status"] == "SUCCESS"


async def test_refused_before_the_provider_is_called(client: httpx.AsyncClient) -> None:
    simulator = client.app.state.simulator  # type: ignore[attr-defined]
    before = sum(simulator.request_counts.values())
    odd_points = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500, 7]}
    cases = [
        (
            {
                "provider": "simulator-vtrix",
                "action": "edits",
                "params": {"job_id": "mj-3", "index": 1, "mask_areas": [odd_points]},
            },
            "params.mask_areas[0].points",
        ),
        (
            {"action": "upscale", "params": {"parent_job_id": "job-42", "index": 1}},
            "params.parent_job_id",
        ),
        (
            {
                "provider": "simulator-apimart",
                "action": "video",
                "params": {"image_urls": [URL], "motion": "wild"},
            },
            "params.motion",
        ),
        (
            {
                "provider": "simulator-apimart",
                "action": "imagine",
                "params": {"prompt": "x", "image_urls": ["data:image/png;base64,AAAA"]},
            },
            "params.image_urls[0]",
        ),
    ]
    for body, field in cases:
        assert_problem(await client.post("/v1/tasks", json=body), 422, field)
    assert sum(simulator.request_counts.values()) == before
    assert (await client.get("/v1/tasks")).json()["data"] == []


@pytest.fixture
async def http_apiframe(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A real `apiframe` provider (here: the embedded simulator's Apiframe) with an http://
    public URL, as on a laptop without a tunnel."""
    every = dataclasses.replace(
        settings,
        provider_keys={"apiframe": simulator_key(settings)},
        provider_urls={**settings.provider_urls, "apiframe": f"{BASE}/_sim"},
    )
    with capture_logs() as logs:
        async for c in open_app(every):
            c.logs = logs  # type: ignore[attr-defined]
            yield c


async def test_apiframe_without_https_warns_and_polls(http_apiframe: httpx.AsyncClient) -> None:
    client = http_apiframe
    warned = [e for e in client.logs if e["event"] == "apiframe.webhooks_off"]  # type: ignore[attr-defined]
    assert warned and warned[0]["log_level"] == "warning"
    assert "https://" in warned[0]["message"] and warned[0]["public_url"] == BASE
    assert not svc(client).providers["apiframe"].supports_callbacks
    assert svc(client).providers["simulator"].supports_callbacks  # the simulator is on loopback

    task = await submit(
        client, {"provider": "apiframe", "action": "imagine", "params": {"prompt": "a fox"}}
    )
    simulator = client.app.state.simulator  # type: ignore[attr-defined]
    assert simulator.apiframe.jobs[task["provider_task_id"]].webhook_url is None
    done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
    sources = {
        e["source"] for e in await events_of(client, task["id"]) if e["outcome"] == "applied"
    }
    assert sources == {"api", "poll"}


# --- item 6: base64 images to APIMart, nowhere else --------------------------------------------


async def test_an_inline_image_goes_to_apimart_and_is_kept_nowhere(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    image = PNG_SIGNATURE + b"jobhook-inline-image-bytes " * 400
    payload = base64.b64encode(image).decode()
    probe = payload[400:480]  # a stretch of the base64 from the middle of the image
    with capture_logs() as logs:
        task = await submit(
            client,
            {
                "provider": "simulator-apimart",
                "action": "imagine",
                "params": {
                    "prompt": "turn this product into a studio photo",
                    "image_urls": [URL, "data:image/png;base64," + payload],
                },
            },
        )
        done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS"
    kept = done["params"]["image_urls"]
    assert kept[0] == URL and kept[1].startswith("<base64 image, ")
    everything = orjson.dumps(
        [done, await events_of(client, task["id"]), (await client.get("/v1/tasks")).json()]
    ).decode()
    assert probe not in everything
    assert probe not in repr(logs)
    if settings.database_url.startswith("sqlite:"):
        for path in Path(settings.database_url.removeprefix("sqlite:///")).parent.glob("*sqlite*"):
            assert probe.encode() not in path.read_bytes(), path
    # The wrong type is refused naming the field, never echoing the bytes.
    r = await client.post(
        "/v1/tasks",
        json={
            "provider": "simulator-apimart",
            "action": "describe",
            "params": {"image_urls": ["data:image/jpeg;base64," + payload]},
        },
    )
    body = assert_problem(r, 422, "params.image_urls[0]")
    assert probe not in r.text and "JPEG" in body["detail"]


# --- item 8: cancel says what the provider did -------------------------------------------------


async def test_cancel_says_the_provider_keeps_working(client: httpx.AsyncClient) -> None:
    task = await submit(
        client,
        {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "[never]"}},
    )
    r = await client.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200
    answer = r.json()
    assert answer["status"] == "CANCEL" and answer["provider_cancelled"] is False
    assert "documents no way to cancel" in answer["provider_cancel_detail"]
    assert "may bill" in answer["provider_cancel_detail"]
    # The task as GET shows it has no such fields: they answer the cancel call only.
    assert "provider_cancelled" not in (await client.get(f"/v1/tasks/{task['id']}")).json()
    cancelled = [e for e in await events_of(client, task["id"]) if e["type"] == "cancelled"]
    assert "documents no way to cancel" in cancelled[0]["detail"]["note"]
    # ... and indeed APIMart's task runs on.
    simulator = client.app.state.simulator  # type: ignore[attr-defined]
    job = simulator.apimart.jobs[task["provider_task_id"]]
    assert job.status in ("SUBMITTED", "IN_PROGRESS", "NOT_START")


async def test_cancel_of_an_apimart_modal_task_says_apimart_refunds_it(
    client: httpx.AsyncClient,
) -> None:
    def mart(action: str, **params: Any) -> dict[str, Any]:
        return {"provider": "simulator-apimart", "action": action, "params": params}

    grid = await finished(client, (await submit(client, mart("imagine", prompt="a room")))["id"])
    up = await finished(
        client,
        (
            await submit(
                client, {"action": "upscale", "parent_id": grid["id"], "params": {"index": 1}}
            )
        )["id"],
    )
    inpaint = await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
    assert inpaint["status"] == "MODAL"
    answer = (await client.post(f"/v1/tasks/{inpaint['id']}/cancel")).json()
    assert answer["status"] == "CANCEL" and answer["provider_cancelled"] is False
    assert "30-minute timeout cancels and refunds it" in answer["provider_cancel_detail"]


class CancellingApimart(ApimartProvider):
    """A provider that documents a cancel (none of the three does): here the simulator's task
    query stands in for the cancel endpoint, so the call goes over HTTP like any other."""

    confirm = True

    def build_cancel(self, provider_task_id: str) -> ProviderRequest:
        return self._request("GET", f"/v1/tasks/{provider_task_id}", None)

    def parse_cancel(self, response: ProviderResponse) -> bool:
        if response.status_code != 200:
            raise ProviderRejected("no such task", http_status=404, provider_code="3")
        return self.confirm


@pytest.mark.parametrize(
    ("confirm", "known", "cancelled", "says"),
    [
        (True, True, True, "confirmed the cancellation"),
        (False, True, False, "did not confirm the cancellation: it may finish"),
        (True, False, False, "did not confirm the cancellation (no such task)"),
    ],
)
async def test_cancel_asks_a_provider_that_documents_one(
    client: httpx.AsyncClient, confirm: bool, known: bool, cancelled: bool, says: str
) -> None:
    services = svc(client)
    current = services.providers["simulator-apimart"]
    assert isinstance(current, ApimartProvider)
    fake = CancellingApimart(
        api_key=simulator_key(services.settings), base_url=current.base_url, name=current.name
    )
    fake.poll_interval, fake.confirm = current.poll_interval, confirm
    services.providers["simulator-apimart"] = fake
    task = await submit(
        client,
        {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "[never]"}},
    )
    if not known:
        simulator = client.app.state.simulator  # type: ignore[attr-defined]
        del simulator.apimart.jobs[task["provider_task_id"]]
    simulator = client.app.state.simulator  # type: ignore[attr-defined]
    asked = simulator.request_counts["GET /v1/tasks/{id}"]
    answer = (await client.post(f"/v1/tasks/{task['id']}/cancel")).json()
    assert simulator.request_counts["GET /v1/tasks/{id}"] == asked + 1
    assert answer["status"] == Status.CANCEL
    assert answer["provider_cancelled"] is cancelled
    assert says in answer["provider_cancel_detail"]
