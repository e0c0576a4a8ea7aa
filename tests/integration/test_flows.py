"""Seed 002's flows end to end through jobhook's API and poller, against the simulator.

APIMart (`simulator-apimart`) is poll-only: every change here is found by the poller. Vtrix
(`simulator-vtrix`) calls back unsigned hints that jobhook confirms by fetching. Apiframe
(`simulator`) runs inpaint in one step.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import httpx

from service.domain.models import Observation, task_error
from service.domain.status import Status
from service.store.base import TimerLimits
from service.workers.timers import Timers
from tests.conftest import both_stores
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.integration.test_callbacks import events_of
from tests.integration.test_workers import services

APIMART = "simulator-apimart"
MASK_URL = "https://cdn.example.com/mask.png"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


async def imagine(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    body = {"provider": APIMART, "action": "imagine", "params": {"prompt": "a city"} | params}
    return await finished(client, (await submit(client, body))["id"])


async def follow(
    client: httpx.AsyncClient, action: str, parent: str, **params: Any
) -> dict[str, Any]:
    task = await submit(client, {"action": action, "parent_id": parent, "params": params})
    return await finished(client, task["id"])


@both_stores
async def test_flow_a_imagine_then_upscale(client: httpx.AsyncClient) -> None:
    grid = await imagine(client, aspect_ratio="16:9", speed="fast", stylize=250)
    assert grid["status"] == "SUCCESS" and len(grid["result"]["images"]) == 4
    assert grid["result"]["grid_url"] and grid["result"]["actions"]
    up = await follow(client, "upscale", grid["id"], index=2)
    assert up["status"] == "SUCCESS" and len(up["result"]["images"]) == 1
    sources = {e["source"] for e in await events_of(client, up["id"])}
    assert sources == {"api", "poll"}  # APIMart never calls back


async def test_flow_b_image_guided_then_high_variation_then_upscale(
    client: httpx.AsyncClient,
) -> None:
    grid = await imagine(client, image_urls=["https://cdn.example.com/product.png"], iw=1.5)
    varied = await follow(client, "high_variation", grid["id"], index=1, speed="fast")
    assert varied["status"] == "SUCCESS"
    up = await follow(client, "upscale", varied["id"], index=3)
    assert up["status"] == "SUCCESS"


async def test_flow_c_inpaint_modal_then_success(client: httpx.AsyncClient) -> None:
    up = await follow(client, "upscale", (await imagine(client))["id"], index=1)
    inpaint = await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
    assert inpaint["status"] == "MODAL"  # a valid waiting state, not an error
    # ?wait returns at once for a MODAL task: the client's turn.
    waited = (await client.get(f"/v1/tasks/{inpaint['id']}", params={"wait": 30})).json()
    assert waited["status"] == "MODAL"
    assert_problem(
        await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"mask_url": "ftp://x"}),
        422,
        "mask_url",
    )
    assert_problem(
        await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"colour": "red"}), 422, "colour"
    )
    mask = base64.b64encode(PNG).decode()
    r = await client.post(
        f"/v1/tasks/{inpaint['id']}/modal", json={"prompt": "a red leather sofa", "mask": mask}
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "SUBMITTED"
    assert r.json()["provider_task_id"] == inpaint["provider_task_id"]  # same provider task
    # The task shows what the modal call sent: the prompt, and the mask only as a summary.
    sent = r.json()["params"]["modal"]
    assert sent["prompt"] == "a red leather sofa" and sent["mask"].startswith("<base64 mask, ")
    assert mask[:40] not in r.text
    done = await finished(client, inpaint["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
    assert done["params"]["modal"] == sent
    types = [e["type"] for e in await events_of(client, inpaint["id"]) if e["outcome"] == "applied"]
    assert types[:3] == ["modal", "submitted", "progress"] or types[0] == "modal"
    assert_problem(await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={}), 409)


async def test_flow_d_zoom(client: httpx.AsyncClient) -> None:
    up = await follow(client, "upscale", (await imagine(client))["id"], index=1)
    zoomed = await follow(client, "zoom", up["id"], zoom_ratio=1.5, speed="fast")
    assert zoomed["status"] == "SUCCESS" and zoomed["result"]["images"]


async def test_flow_e_video(client: httpx.AsyncClient) -> None:
    task = await submit(
        client,
        {
            "provider": APIMART,
            "action": "video",
            "params": {
                "prompt": "city traffic at night",
                "image_urls": ["https://cdn.example.com/city.jpg"],
                "video_type": "vid_1.1_i2v_720",
                "batch_size": 2,
            },
        },
    )
    done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS" and done["result"]["videos"]


async def test_apimart_constraints_are_checked_before_sending(client: httpx.AsyncClient) -> None:
    for params, field in (
        ({"prompt": "x", "stylize": 5000}, "params.stylize"),
        ({"prompt": "x", "speed": "warp"}, "params.speed"),
        ({"prompt": "x", "chaos": -1}, "params.chaos"),
        ({"prompt": "x", "iw": 9}, "params.iw"),
    ):
        r = await client.post(
            "/v1/tasks", json={"provider": APIMART, "action": "imagine", "params": params}
        )
        assert_problem(r, 422, field)
    assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_modal_on_a_task_that_is_not_modal_is_409(client: httpx.AsyncClient) -> None:
    grid = await imagine(client)
    assert_problem(await client.post(f"/v1/tasks/{grid['id']}/modal", json={"prompt": "x"}), 409)


async def test_vtrix_inpaint_runs_on_confirmed_hints(client: httpx.AsyncClient) -> None:
    task = await submit(
        client,
        {
            "provider": "simulator-vtrix",
            "action": "inpaint",
            "params": {
                "job_id": "external-mj-job-1",
                "index": 2,
                "prompt": "a hat",
                "mask_url": "https://cdn.example.com/mask.png",
            },
        },
    )
    done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
    events = await events_of(client, task["id"])
    # The hints were never believed: every change came from the provider's API.
    assert {e["source"] for e in events if e["outcome"] == "applied"} == {"api", "poll"}


async def test_apiframe_inpaint_is_one_step(client: httpx.AsyncClient) -> None:
    grid = await finished(
        client, (await submit(client, {"action": "imagine", "params": {"prompt": "a fox"}}))["id"]
    )
    up = await follow(client, "upscale", grid["id"], index=1)
    mask = base64.b64encode(PNG).decode()
    done = await follow(client, "inpaint", up["id"], mask=mask, prompt="a hat")
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4


@both_stores
async def test_concurrent_modal_calls_reach_the_provider_once(client: httpx.AsyncClient) -> None:
    up = await follow(client, "upscale", (await imagine(client))["id"], index=1)
    inpaint = await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
    body = {"prompt": "a sofa", "mask_url": "https://cdn.example.com/mask.png"}
    answers = await asyncio.gather(
        *(client.post(f"/v1/tasks/{inpaint['id']}/modal", json=body) for _ in range(4))
    )
    assert sorted(r.status_code for r in answers) == [202, 409, 409, 409]
    simulator = client.app.state.simulator  # type: ignore[attr-defined]
    # imagine, upscale and inpaint, then exactly one modal call
    assert simulator.request_counts["POST /v1/midjourney/generations/{action}"] == 4
    assert (await finished(client, inpaint["id"]))["status"] == "SUCCESS"


# --- seed 002's MODAL paths: reached by polling, by CustomZoom, and raced by the timer ----------


async def until_modal(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task once it waits in MODAL (`?wait` returns on each change, and at once in MODAL)."""
    async with asyncio.timeout(20):
        while True:
            r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 5})
            task: dict[str, Any] = r.json()
            if task["status"] == "MODAL":
                return task
            assert task["status"] in ("NOT_START", "SUBMITTED"), task


async def test_an_inpaint_answered_submitted_reaches_modal_through_polling(
    client: httpx.AsyncClient,
) -> None:
    """Seed 002's state machine: the inpaint's answer says `submitted`; only a poll finds it
    waiting in MODAL (15%), and the modal call then finishes it."""
    grid = await imagine(client, prompt="a living room [pollmodal]")
    up = await follow(client, "upscale", grid["id"], index=1)
    inpaint = await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
    assert inpaint["status"] == "SUBMITTED"
    waiting = await until_modal(client, inpaint["id"])
    assert waiting["progress"] == 15
    [entered] = [e for e in await events_of(client, inpaint["id"]) if e["type"] == "modal"]
    assert (entered["source"], entered["outcome"]) == ("poll", "applied")
    r = await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"prompt": "a red sofa"})
    assert r.status_code == 202, r.text
    done = await finished(client, inpaint["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4


async def test_custom_zoom_enters_modal(client: httpx.AsyncClient) -> None:
    """Seed 002: "inpaint / CustomZoom -> MODAL(15%)": a zoom by the Custom Zoom button waits
    for its modal call (the zoom prompt), then runs."""
    up = await follow(client, "upscale", (await imagine(client))["id"], index=1)
    [custom] = [a for a in up["result"]["actions"] if a["label"] == "Custom Zoom"]
    zoom = await submit(
        client,
        {"action": "zoom", "parent_id": up["id"], "params": {"custom_id": custom["custom_id"]}},
    )
    assert (zoom["status"], zoom["progress"]) == ("MODAL", 15)
    r = await client.post(
        f"/v1/tasks/{zoom['id']}/modal", json={"prompt": "a wide hall --zoom 1.8"}
    )
    assert r.status_code == 202, r.text
    done = await finished(client, zoom["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4


@both_stores
async def test_the_modal_timer_and_a_modal_call_never_both_win(client: httpx.AsyncClient) -> None:
    """The MODAL timer fires while the modal call is at the provider: the call wins (the timer
    yields, whether it looks then or had read the task just before the call claimed it). The
    timer fires first: the call is refused before it reaches the provider."""
    svc = services(client)
    sim = client.app.state.simulator  # type: ignore[attr-defined]
    up = await follow(client, "upscale", (await imagine(client))["id"], index=1)
    racing, late = [
        await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
        for _ in range(2)
    ]
    expired = TimerLimits(modal=0, submit=3600, queue=7200, run=3600)
    timers = Timers(svc, expired)
    # The provider takes a moment to answer the modal call.
    sim.faults.configure(
        {"hang": 1, "hang_seconds": 0.3, "path_prefix": "/v1/midjourney/generations/modal"}
    )
    call = asyncio.create_task(
        client.post(f"/v1/tasks/{racing['id']}/modal", json={"mask_url": MASK_URL})
    )
    async with asyncio.timeout(5):
        while True:  # until the call is at the provider
            if sim.faults.injected["hang"]:
                break
            await asyncio.sleep(0.005)
    # The call is at the provider: the timer passes the task over ...
    assert [d.task_id for d in await svc.store.due_timers(time.time(), expired)] == [late["id"]]
    # ... and had it read the task just before the call claimed it, its CANCEL is stale.
    timeout = Observation(
        status=Status.CANCEL, source="timer", error=task_error("modal_timeout", "too late")
    )
    yielded = await svc.ingest(racing["id"], timeout)
    assert (yielded.decision.outcome, yielded.task["status"]) == ("stale", "MODAL")
    r = await call
    assert r.status_code == 202, r.text
    assert (await finished(client, racing["id"]))["status"] == "SUCCESS"

    # The other task's timer fires first: CANCEL, and its modal call never leaves jobhook.
    assert await timers.fire() == 1
    cancelled = (await client.get(f"/v1/tasks/{late['id']}")).json()
    assert (cancelled["status"], cancelled["error"]["code"]) == ("CANCEL", "modal_timeout")
    calls = sim.request_counts["POST /v1/midjourney/generations/{action}"]
    assert_problem(
        await client.post(f"/v1/tasks/{late['id']}/modal", json={"mask_url": MASK_URL}), 409
    )
    assert sim.request_counts["POST /v1/midjourney/generations/{action}"] == calls
    for task in (racing, late):  # each ended one way only
        ended = [e for e in await events_of(client, task["id"]) if e["outcome"] == "applied"]
        assert [e["type"] for e in ended][-1] in ("succeeded", "cancelled")
        assert sum(e["type"] in ("succeeded", "cancelled") for e in ended) == 1
