"""The simulator's Apiframe over HTTP-shaped calls: the job clock, signed webhooks in order, real
PNGs, the documented errors, determinism, and a round trip through the Apiframe adapter.
"""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from service.domain.status import Status
from service.errors import ProviderRejected
from service.providers.apiframe import ApiframeProvider
from service.providers.base import ProviderRequest, ProviderResponse
from service.simulator import Simulator, create_standalone_app
from service.simulator.png import PNG_SIGNATURE

KEY = "afk_sim_key"
AUTH = {"X-API-Key": KEY}
HOOK = "https://backend.test/hooks/apiframe"
ALL_EVENTS = ["progress", "completed", "failed"]
JOB_KEYS = {
    "id",
    "status",
    "model",
    "progress",
    "result",
    "error",
    "creditCost",
    "webhookStatus",
    "createdAt",
    "completedAt",
}


class Hooks:
    """The webhook receiver: records requests and answers with the queued status codes."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[int] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.answers.pop(0) if self.answers else 200)

    def events(self) -> list[str]:
        return [json.loads(request.content)["event"] for request in self.requests]


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
async def sim(hooks: Hooks) -> AsyncIterator[Simulator]:
    async with Simulator(
        seed=7, step_seconds=0.01, transport=httpx.MockTransport(hooks.handler)
    ) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
        yield http


async def eventually(check: Callable[[], bool]) -> None:
    # A generous bound only so a broken clock fails the test instead of hanging it.
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


async def wait_job(
    client: httpx.AsyncClient, job_id: str, status: str, prefix: str = ""
) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            response = await client.get(f"{prefix}/v2/jobs/{job_id}", headers=AUTH)
            body: dict[str, Any] = response.json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.01)


async def imagine(client: httpx.AsyncClient, prompt: str = "a red fox", **extra: Any) -> str:
    response = await client.post(
        "/v2/images/generate", json={"prompt": prompt, "model": "midjourney", **extra}, headers=AUTH
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "QUEUED"
    job_id: str = body["jobId"]
    return job_id


async def action(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v2/images/midjourney/action", json=body, headers=AUTH)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE)
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour) == (8, 2)
    idat_length, idat = struct.unpack(">I4s", data[33:41])
    assert idat == b"IDAT"
    assert len(zlib.decompress(data[41 : 41 + idat_length])) == height * (1 + 3 * width)
    assert data.endswith(b"IEND\xae\x42\x60\x82")
    return width, height


async def test_imagine_webhooks_in_order_and_signed(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await imagine(client, webhookUrl=HOOK, webhookEvents=ALL_EVENTS)
    await eventually(lambda: sim.apiframe.jobs[job_id].webhook_status == "sent")
    await eventually(lambda: len(hooks.requests) == 4)

    assert hooks.events() == ["progress", "progress", "progress", "completed"]
    provider = ApiframeProvider(api_key=KEY)
    observations = []
    for request in hooks.requests:
        assert str(request.url) == HOOK
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-webhook-signature"].startswith("sha256=")
        assert request.headers["x-webhook-event"] == json.loads(request.content)["event"]
        assert provider.verify_callback(request.headers, request.content)
        assert not ApiframeProvider(api_key="afk_other").verify_callback(
            request.headers, request.content
        )
        [observation] = provider.parse_callback(request.headers, request.content)
        observations.append(observation)
    assert [(o.status, o.progress) for o in observations] == [
        (Status.IN_PROGRESS, 25),
        (Status.IN_PROGRESS, 50),
        (Status.IN_PROGRESS, 75),
        (Status.SUCCESS, 100),
    ]
    final = observations[-1]
    assert final.provider_task_id == job_id
    assert final.result is not None
    assert len(final.result["images"]) == 4
    assert final.result["grid_url"] == f"http://sim.test/images/{job_id}-grid.png"
    completed = json.loads(hooks.requests[-1].content)
    assert set(completed) == {
        "event",
        "jobId",
        "status",
        "progress",
        "result",
        "model",
        "creditCost",
        "completedAt",
    }
    assert [(w.event, w.status_code, w.attempt) for w in sim.sent_webhooks] == [
        ("progress", 200, 1),
        ("progress", 200, 1),
        ("progress", 200, 1),
        ("completed", 200, 1),
    ]


async def test_job_shape_and_images(sim: Simulator, client: httpx.AsyncClient) -> None:
    job_id = await imagine(client)
    queued = (await client.get(f"/v2/jobs/{job_id}", headers=AUTH)).json()
    assert set(queued) == JOB_KEYS
    assert queued["status"] in ("QUEUED", "PROCESSING")

    job = await wait_job(client, job_id, "COMPLETED")
    assert set(job) == JOB_KEYS
    assert (job["id"], job["model"], job["progress"], job["error"]) == (
        job_id,
        "midjourney",
        100,
        None,
    )
    assert job["creditCost"] == 16
    assert job["webhookStatus"] is None
    assert job["createdAt"].endswith("Z")
    assert job["completedAt"].endswith("Z")
    images = job["result"]["images"]
    assert images == [f"http://sim.test/images/{job_id}-{n}.png" for n in range(1, 5)]

    first = await client.get(images[0])
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert png_size(first.content) == (64, 64)
    second = await client.get(images[1])
    assert second.content != first.content
    grid = await client.get(job["result"]["gridUrl"])
    assert png_size(grid.content) == (128, 128)

    assert sim.request_counts["POST /v2/images/generate"] == 1
    assert sim.request_counts["GET /images/{name}.png"] == 3
    assert sim.request_counts["GET /v2/jobs/{id}"] >= 2


async def test_default_webhook_events_are_terminal_only(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await imagine(client, webhookUrl=HOOK)
    await eventually(lambda: sim.apiframe.jobs[job_id].webhook_status == "sent")
    assert hooks.events() == ["completed"]


async def test_follow_ups(sim: Simulator, client: httpx.AsyncClient) -> None:
    grid_id = await imagine(client)
    await wait_job(client, grid_id, "COMPLETED")

    response = await action(client, action="upsample", parentJobId=grid_id, index=2)
    assert response.status_code == 202
    upscale_id = response.json()["jobId"]
    upscaled = await wait_job(client, upscale_id, "COMPLETED")
    assert upscaled["result"] == {
        "images": [f"http://sim.test/images/{upscale_id}-1.png"],
        "gridUrl": None,
    }
    assert upscaled["creditCost"] == 4

    on_grid = await action(client, action="inpaint", parentJobId=grid_id, mask="aGVsbG8=")
    assert on_grid.status_code == 400
    again = await action(client, action="upsample", parentJobId=upscale_id, index=1)
    assert again.status_code == 409

    inpaint = await action(
        client,
        action="inpaint",
        parentJobId=upscale_id,
        mask="data:image/png;base64,aGVsbG8=",
        prompt="a balloon",
    )
    assert inpaint.status_code == 202
    inpainted = await wait_job(client, inpaint.json()["jobId"], "COMPLETED")
    assert len(inpainted["result"]["images"]) == 4

    for body in (
        {"action": "variation", "index": 4},
        {"action": "outpaint", "zoomRatio": 1.5},
        {"action": "pan", "direction": "up"},
    ):
        response = await action(client, parentJobId=grid_id, **body)
        assert response.status_code == 202, (body, response.text)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 2001}, "prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "model": "dalle"}, "model"),
        (
            {"prompt": "x", "midjourneyParams": {"aspect_ratio": "wide"}},
            "midjourneyParams.aspect_ratio",
        ),
        ({"prompt": "x", "webhookUrl": "ftp://x"}, "webhookUrl"),
        ({"prompt": "x", "webhookUrl": HOOK, "webhookEvents": ["done"]}, "webhookEvents"),
    ],
)
async def test_generate_validation(
    client: httpx.AsyncClient, body: dict[str, Any], path: str
) -> None:
    response = await client.post("/v2/images/generate", json=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "Validation failed"
    assert list(response.json()["details"]) == [path]


async def test_action_errors(sim: Simulator, client: httpx.AsyncClient) -> None:
    done = await imagine(client)
    await wait_job(client, done, "COMPLETED")
    running = await imagine(client, "slow [never]")

    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"action": "reroll", "parentJobId": done}, 400, "action"),
        ({"action": "upsample"}, 400, "parentJobId"),
        ({"action": "upsample", "parentJobId": done, "index": 5}, 400, "index"),
        ({"action": "upsample", "parentJobId": done, "index": True}, 400, "index"),
        ({"action": "variation", "parentJobId": done}, 400, "index"),
        ({"action": "outpaint", "parentJobId": done, "zoomRatio": 3}, 400, "zoomRatio"),
        ({"action": "pan", "parentJobId": done, "direction": "north"}, 400, "direction"),
        ({"action": "inpaint", "parentJobId": done}, 400, "mask"),
        ({"action": "inpaint", "parentJobId": done, "mask": "!!"}, 400, "mask"),
        ({"action": "upsample", "parentJobId": "nope", "index": 1}, 404, None),
        ({"action": "upsample", "parentJobId": running, "index": 1}, 409, None),
    ]
    for body, status, path in cases:
        response = await action(client, **body)
        assert response.status_code == status, (body, response.text)
        if path is not None:
            assert list(response.json()["details"]) == [path]
        elif status == 404:
            assert response.json() == {"error": "Job not found"}


async def test_auth_and_unknown_job(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v2/images/generate", json={"prompt": "x"})
    assert (missing.status_code, missing.json()) == (401, {"error": "Invalid API key"})
    assert (await client.get("/v2/jobs/x")).status_code == 401
    unknown = await client.get("/v2/jobs/not-a-job", headers=AUTH)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Job not found"})
    garbage = await client.post("/v2/images/generate", content=b"{", headers=AUTH)
    assert garbage.status_code == 400


async def test_api_keys_are_enforced_and_jobs_private() -> None:
    async with Simulator(api_keys=["afk_a", "afk_b"], step_seconds=0.01) as sim:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            body = {"prompt": "x"}
            wrong = await http.post("/v2/images/generate", json=body, headers=AUTH)
            assert wrong.status_code == 401
            made = await http.post("/v2/images/generate", json=body, headers={"X-API-Key": "afk_a"})
            assert made.status_code == 202
            other = await http.get(
                f"/v2/jobs/{made.json()['jobId']}", headers={"X-API-Key": "afk_b"}
            )
            assert other.status_code == 404


async def test_fail_marker(sim: Simulator, client: httpx.AsyncClient, hooks: Hooks) -> None:
    job_id = await imagine(client, "a fox [fail]", webhookUrl=HOOK, webhookEvents=ALL_EVENTS)
    job = await wait_job(client, job_id, "FAILED")
    assert job["error"] == "Provider returned an error: content policy violation"
    assert (job["result"], job["creditCost"]) == (None, 0)
    await eventually(lambda: hooks.events()[-1:] == ["failed"])
    failed = hooks.requests[-1]
    assert json.loads(failed.content) == {
        "event": "failed",
        "jobId": job_id,
        "status": "FAILED",
        "error": "Provider returned an error: content policy violation",
        "model": "midjourney",
    }
    provider = ApiframeProvider(api_key=KEY)
    assert provider.verify_callback(failed.headers, failed.content)
    [observation] = provider.parse_callback(failed.headers, failed.content)
    assert observation.status is Status.FAILURE


async def test_never_marker_stays_processing(sim: Simulator, client: httpx.AsyncClient) -> None:
    job_id = await imagine(client, "[never] finishes")
    await eventually(lambda: sim.apiframe.jobs[job_id].progress == 75)
    for _ in range(5):
        await sim.tick()
    job = (await client.get(f"/v2/jobs/{job_id}", headers=AUTH)).json()
    assert (job["status"], job["completedAt"]) == ("PROCESSING", None)


async def test_webhook_retries_then_gives_up(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    hooks.answers = [500, 503, 200]
    first = await imagine(client, webhookUrl=HOOK)
    await eventually(lambda: sim.apiframe.jobs[first].webhook_status == "sent")
    assert [(w.attempt, w.status_code) for w in sim.sent_webhooks] == [(1, 500), (2, 503), (3, 200)]

    hooks.answers = [500] * 10
    second = await imagine(client, webhookUrl=HOOK)
    await eventually(lambda: sim.apiframe.jobs[second].webhook_status == "failed")
    attempts = [w for w in sim.sent_webhooks if w.job_id == second]
    assert [w.attempt for w in attempts] == [1, 2, 3, 4]
    assert not any(w.delivered for w in attempts)


async def test_webhook_connect_error_is_recorded() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with Simulator(step_seconds=0.01, transport=httpx.MockTransport(refuse)) as sim:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            job_id = await imagine(http, webhookUrl=HOOK)
            await eventually(lambda: sim.apiframe.jobs[job_id].webhook_status == "failed")
    assert {w.status_code for w in sim.sent_webhooks} == {None}
    assert all(w.error and "ConnectError" in w.error for w in sim.sent_webhooks)


async def test_seeded_simulators_are_deterministic() -> None:
    async def ids(seed: int) -> list[str]:
        async with Simulator(seed=seed, step_seconds=0.01) as sim:
            transport = httpx.ASGITransport(app=sim.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
                return [await imagine(http, f"prompt {n}") for n in range(3)]

    first, second, other = await ids(42), await ids(42), await ids(43)
    assert first == second
    assert first != other
    assert len(set(first)) == 3


async def test_idempotency_key_replays(sim: Simulator, client: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    one = await client.post("/v2/images/generate", json={"prompt": "x"}, headers=headers)
    two = await client.post("/v2/images/generate", json={"prompt": "x"}, headers=headers)
    assert one.json()["jobId"] == two.json()["jobId"]
    assert len(sim.apiframe.jobs) == 1


async def test_mounted_image_urls_keep_the_prefix(sim: Simulator) -> None:
    outer = Starlette(routes=[Mount("/_sim", app=sim.app)])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://main.test") as http:
        response = await http.post("/_sim/v2/images/generate", json={"prompt": "x"}, headers=AUTH)
        job_id = response.json()["jobId"]
        job = await wait_job(http, job_id, "COMPLETED", prefix="/_sim")
        url = job["result"]["images"][0]
        assert url == f"http://main.test/_sim/images/{job_id}-1.png"
        assert png_size((await http.get(url)).content) == (64, 64)
    assert sim.request_counts["POST /v2/images/generate"] == 1


async def test_standalone_app_lifespan_starts_the_sender(hooks: Hooks) -> None:
    app = create_standalone_app(
        seed=1, step_seconds=0.01, transport=httpx.MockTransport(hooks.handler)
    )
    sim: Simulator = app.state.simulator
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            job_id = await imagine(http, webhookUrl=HOOK)
            await eventually(lambda: sim.apiframe.jobs[job_id].webhook_status == "sent")
    assert hooks.events() == ["completed"]


async def send(client: httpx.AsyncClient, request: ProviderRequest) -> ProviderResponse:
    response = await client.request(
        request.method, request.path, json=request.json, headers=dict(request.headers)
    )
    return ProviderResponse(
        status_code=response.status_code, headers=response.headers, body=response.content
    )


async def test_round_trip_through_the_adapter(sim: Simulator, client: httpx.AsyncClient) -> None:
    provider = ApiframeProvider(api_key=KEY, base_url="http://sim.test", name="simulator")
    request = provider.build_submit(
        "imagine", {"prompt": "a red fox", "aspect_ratio": "16:9"}, parent=None, callback_url=None
    )
    submitted = provider.parse_submit(await send(client, request))
    assert submitted.observation.status is Status.SUBMITTED

    async with asyncio.timeout(5):
        while True:
            observation = provider.parse_query(
                await send(client, provider.build_query(submitted.provider_task_id))
            )
            assert observation.status is not None
            if observation.status is Status.SUCCESS:
                break
            await asyncio.sleep(0.01)
    assert observation.progress == 100
    assert observation.result is not None
    assert len(observation.result["images"]) == 4
    assert observation.result["grid_url"] is not None
    assert observation.result["cost"] == {"credits": 16}

    with pytest.raises(ProviderRejected, match="Job not found"):
        provider.parse_query(await send(client, provider.build_query("missing")))

    follow_up = provider.build_submit(
        "upscale",
        {"index": 3, "parent_job_id": submitted.provider_task_id},
        parent=None,
        callback_url=None,
    )
    assert provider.parse_submit(await send(client, follow_up)).provider_task_id
    bad_parent = provider.build_submit(
        "upscale",
        {"index": 3, "parent_job_id": "00000000-0000-4000-8000-000000000000"},
        parent=None,
        callback_url=None,
    )
    with pytest.raises(ProviderRejected, match="Job not found"):
        provider.parse_submit(await send(client, bad_parent))
