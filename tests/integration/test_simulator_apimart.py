"""The simulator's APIMart through the APIMart adapter (seed 002's flows A-E, the MODAL timeout,
both task shapes, its errors), and the simulator's fault injection: API faults on any provider,
callback faults on the Apiframe simulator's webhooks.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from service.domain.models import Observation
from service.domain.status import Status
from service.errors import ProviderRejected, ProviderUnavailable
from service.providers.apiframe import ApiframeProvider
from service.providers.apimart import ApimartProvider
from service.providers.base import Parent, ProviderRequest, ProviderResponse
from service.simulator import Simulator, create_standalone_app
from service.simulator.faults import MALFORMED_BODY, CallbackFaults

KEY = "sk-sim-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
URL = "https://cdn.example.com/product.png"
MASK = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(16)).decode()
HOOK = "https://backend.test/hooks/apiframe"
APIFRAME_KEY = "afk_sim_key"


class Hooks:
    """The webhook receiver: records every request, answers 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)

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


@pytest.fixture
def mart() -> ApimartProvider:
    return ApimartProvider(api_key=KEY, base_url="http://sim.test", name="simulator-apimart")


async def send(client: httpx.AsyncClient, request: ProviderRequest) -> ProviderResponse:
    response = await client.request(
        request.method, request.path, json=request.json, headers=dict(request.headers)
    )
    return ProviderResponse(
        status_code=response.status_code, headers=response.headers, body=response.content
    )


async def eventually(check: Callable[[], bool]) -> None:
    # A generous bound only so a broken clock fails the test instead of hanging it.
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


async def submit(
    client: httpx.AsyncClient,
    mart: ApimartProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent | None = None,
) -> str:
    request = mart.build_submit(action, params, parent=parent, callback_url=None)
    submitted = mart.parse_submit(await send(client, request))
    assert submitted.observation.status is Status.SUBMITTED
    return submitted.provider_task_id


async def poll(
    client: httpx.AsyncClient, mart: ApimartProvider, task_id: str, until: Status = Status.SUCCESS
) -> Observation:
    seen: list[int] = []
    async with asyncio.timeout(5):
        while True:
            obs = mart.parse_query(await send(client, mart.build_query(task_id)))
            assert obs.status is not None, obs.detail
            assert obs.progress is not None
            seen.append(obs.progress)
            if obs.status is until:
                assert seen == sorted(seen), "progress went backwards"
                return obs
            await asyncio.sleep(0.005)


def child_of(task_id: str, action: str) -> Parent:
    return Parent(provider_task_id=task_id, action=action, params={})


# --- seed 002's flows --------------------------------------------------------------------------


async def test_flow_a_imagine_then_upscale(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    params = {"prompt": "a futuristic city", "version": "8.1", "aspect_ratio": "16:9"}
    grid_id = await submit(client, mart, "imagine", {**params, "speed": "fast", "stylize": 250})
    assert grid_id.startswith("task_") and len(grid_id) == 31
    grid = await poll(client, mart, grid_id)
    assert grid.progress == 100
    assert grid.result is not None
    assert grid.result["images"] == [
        f"http://sim.test/images/{grid_id}-{n}.png" for n in range(1, 5)
    ]
    assert grid.result["grid_url"] == f"http://sim.test/images/{grid_id}-grid.png"
    labels = [action["label"] for action in grid.result["actions"]]
    assert labels[:8] == ["U1", "U2", "U3", "U4", "V1", "V2", "V3", "V4"]
    assert grid.raw["action"] == "IMAGINE"

    up_id = await submit(client, mart, "upscale", {"index": 2}, child_of(grid_id, "imagine"))
    up = await poll(client, mart, up_id)
    assert up.result is not None
    assert up.result["images"] == [f"http://sim.test/images/{up_id}-1.png"]
    assert up.result["grid_url"] is None
    image = await client.get(up.result["images"][0])
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")

    # The unified task shape tells the same story.
    unified = await client.get(f"/v1/tasks/{up_id}", headers=AUTH)
    assert unified.json()["code"] == 200
    obs = mart.parse_query(
        ProviderResponse(status_code=200, headers=unified.headers, body=unified.content)
    )
    assert (obs.status, obs.progress, obs.provider_task_id) == (Status.SUCCESS, 100, up_id)
    assert obs.result is not None
    assert obs.result["images"] == up.result["images"]
    assert obs.result["expires_at"] is not None and obs.result["expires_at"].endswith("Z")
    grid_unified = (await client.get(f"/v1/tasks/{grid_id}", headers=AUTH)).json()
    assert grid_unified["data"]["result"]["images"][0]["url"] == grid.result["images"]


async def test_flow_b_image_guided_then_high_variation_then_upscale(
    client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    params = {"prompt": "a luxury studio photo", "image_urls": [URL], "iw": 1.5, "size": "1:1"}
    grid_id = await submit(client, mart, "imagine", params)
    await poll(client, mart, grid_id)
    varied_id = await submit(
        client, mart, "high_variation", {"index": 1, "speed": "fast"}, child_of(grid_id, "imagine")
    )
    varied = await poll(client, mart, varied_id)
    assert varied.raw["action"] == "HIGH_VARIATION"
    assert varied.result is not None
    assert len(varied.result["images"]) == 4
    up_id = await submit(
        client, mart, "upscale", {"index": 3}, child_of(varied_id, "high_variation")
    )
    assert (await poll(client, mart, up_id)).raw["action"] == "UPSCALE"


async def upscaled(client: httpx.AsyncClient, mart: ApimartProvider) -> str:
    grid_id = await submit(client, mart, "imagine", {"prompt": "a living room"})
    await poll(client, mart, grid_id)
    up_id = await submit(client, mart, "upscale", {"index": 1}, child_of(grid_id, "imagine"))
    await poll(client, mart, up_id)
    return up_id


async def test_flow_c_inpaint_modal_then_success(
    client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    up_id = await upscaled(client, mart)
    request = mart.build_submit("inpaint", {}, parent=child_of(up_id, "upscale"), callback_url=None)
    submitted = mart.parse_submit(await send(client, request))
    task_id = submitted.provider_task_id
    assert (submitted.observation.status, submitted.observation.progress) == (Status.MODAL, 15)
    for _ in range(3):  # it waits: nothing moves until the modal call
        waiting = await poll(client, mart, task_id, until=Status.MODAL)
        assert waiting.progress == 15
        await asyncio.sleep(0.02)

    modal = mart.build_modal(task_id, {"prompt": "a red leather sofa", "mask": MASK})
    assert modal.json["mask_url"].startswith("data:image/png;base64,")
    accepted = mart.parse_modal(await send(client, modal))
    assert (accepted.status, accepted.modal_call, accepted.provider_task_id) == (
        Status.SUBMITTED,
        True,
        task_id,
    )
    done = await poll(client, mart, task_id)
    assert done.result is not None
    assert len(done.result["images"]) == 4

    # The modal call is for a MODAL task only.
    with pytest.raises(ProviderRejected) as caught:
        mart.parse_modal(await send(client, mart.build_modal(task_id, {})))
    assert (caught.value.http_status, caught.value.provider_code) == (400, "4")
    assert "not MODAL" in caught.value.detail


async def test_inpaint_needs_an_upscale(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    grid_id = await submit(client, mart, "imagine", {"prompt": "x"})
    await poll(client, mart, grid_id)
    # A parent made outside jobhook (params.task_id) gets past our check; APIMart refuses it.
    request = mart.build_submit("inpaint", {"task_id": grid_id}, parent=None, callback_url=None)
    with pytest.raises(ProviderRejected) as caught:
        mart.parse_submit(await send(client, request))
    assert (caught.value.http_status, caught.value.provider_code) == (400, "4")
    assert "upscale" in caught.value.detail


async def test_outpaint_modal_without_mask(
    client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    up_id = await upscaled(client, mart)
    request = mart.build_submit("inpaint", {"task_id": up_id}, parent=None, callback_url=None)
    task_id = mart.parse_submit(await send(client, request)).provider_task_id
    mart.parse_modal(await send(client, mart.build_modal(task_id, {})))
    assert (await poll(client, mart, task_id)).status is Status.SUCCESS


async def test_flow_d_zoom_and_pan(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    up_id = await upscaled(client, mart)
    parent = child_of(up_id, "upscale")
    zoom_id = await submit(client, mart, "zoom", {"zoom_ratio": 1.5, "speed": "fast"}, parent)
    zoomed = await poll(client, mart, zoom_id)
    assert zoomed.result is not None
    assert len(zoomed.result["images"]) == 4
    pan_id = await submit(client, mart, "pan", {"direction": "left"}, parent)
    assert (await poll(client, mart, pan_id)).raw["action"] == "PAN"


async def test_buttons_drive_follow_ups(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    grid_id = await submit(client, mart, "imagine", {"prompt": "x"})
    grid = await poll(client, mart, grid_id)
    assert grid.result is not None
    u3 = next(a for a in grid.result["actions"] if a["label"] == "U3")
    up_id = await submit(
        client, mart, "upscale", {"custom_id": u3["custom_id"]}, child_of(grid_id, "imagine")
    )
    up = await poll(client, mart, up_id)
    assert up.result is not None
    labels = {action["label"] for action in up.result["actions"]}
    assert {"Vary (Region)", "Zoom Out 2x", "Pan Left"} <= labels
    bad = mart.build_submit(
        "upscale",
        {"custom_id": "MJ::JOB::upsample::1::nope"},
        parent=child_of(grid_id, "imagine"),
        callback_url=None,
    )
    with pytest.raises(ProviderRejected, match="custom_id"):
        mart.parse_submit(await send(client, bad))


async def test_flow_e_video(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    params = {
        "prompt": "city traffic at night",
        "image_urls": [URL],
        "video_type": "vid_1.1_i2v_720",
        "batch_size": 2,
        "end_url": URL,
    }
    video_id = await submit(client, mart, "video", params)
    video = await poll(client, mart, video_id)
    assert video.result is not None
    assert video.result["images"] == []
    assert video.result["videos"] == [
        f"http://sim.test/videos/{video_id}-{n}.mp4" for n in range(1, 3)
    ]
    clip = await client.get(video.result["videos"][0])
    assert (clip.status_code, clip.headers["content-type"]) == (200, "video/mp4")
    assert clip.content[4:8] == b"ftyp"
    unified = (await client.get(f"/v1/tasks/{video_id}", headers=AUTH)).json()
    assert unified["data"]["result"]["videos"][0]["url"] == video.result["videos"]


async def test_blend_describe_edits_reroll(
    client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    blend_id = await submit(client, mart, "blend", {"image_urls": [URL, URL]})
    assert (await poll(client, mart, blend_id)).status is Status.SUCCESS
    describe_id = await submit(client, mart, "describe", {"image_urls": [URL]})
    described = await poll(client, mart, describe_id)
    # describe's four suggestions, each after its keycap digit (docs.apimart.ai .../describe)
    assert described.raw["description"].startswith("1\ufe0f\u20e3 ")
    assert described.result is not None and len(described.result["prompts"]) == 4
    assert described.result["prompts"][0].startswith("a softly lit studio photo")
    edits_id = await submit(client, mart, "edits", {"prompt": "a kitchen", "image_urls": [URL]})
    await poll(client, mart, edits_id)
    reroll_id = await submit(client, mart, "reroll", {}, child_of(edits_id, "edits"))
    assert (await poll(client, mart, reroll_id)).status is Status.SUCCESS


async def test_modal_timeout_cancels(mart: ApimartProvider) -> None:
    async with Simulator(step_seconds=0.01, modal_timeout_steps=3) as sim:
        assert sim.apimart.modal_timeout_steps == 3
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
            up_id = await upscaled(client, mart)
            request = mart.build_submit(
                "inpaint", {"task_id": up_id}, parent=None, callback_url=None
            )
            task_id = mart.parse_submit(await send(client, request)).provider_task_id
            cancelled = await poll(client, mart, task_id, until=Status.CANCEL)
            assert "30 minutes" in cancelled.raw["fail_reason"]
            with pytest.raises(ProviderRejected, match="not MODAL"):
                mart.parse_modal(await send(client, mart.build_modal(task_id, {})))


def test_default_modal_timeout_is_thirty_minutes() -> None:
    assert Simulator(step_seconds=0.5).apimart.modal_timeout_steps == 3600
    assert Simulator(step_seconds=1.0).apimart.modal_timeout_steps == 1800


async def test_markers(sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    failed_id = await submit(client, mart, "imagine", {"prompt": "a fox [fail]"})
    failed = await poll(client, mart, failed_id, until=Status.FAILURE)
    assert failed.error is not None
    assert failed.error["code"] == "provider_failed"
    assert "moderation" in failed.error["message"]
    never_id = await submit(client, mart, "imagine", {"prompt": "a fox [never]"})
    await eventually(lambda: sim.apimart.jobs[never_id].progress == 99)
    for _ in range(5):
        await sim.tick()
    stuck = mart.parse_query(await send(client, mart.build_query(never_id)))
    assert (stuck.status, stuck.progress) == (Status.IN_PROGRESS, 99)


# --- APIMart's errors --------------------------------------------------------------------------


async def test_auth_unknown_and_foreign_tasks(
    client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    body = {"prompt": "x"}
    missing = await client.post("/v1/midjourney/generations/imagine", json=body)
    assert (missing.status_code, missing.json()["code"]) == (401, 401)
    anonymous = ApimartProvider(api_key="wrong", base_url="http://sim.test")
    with pytest.raises(ProviderRejected) as caught:
        anonymous.parse_query(await send(client, anonymous.build_query("x")))
    assert caught.value.http_status == 404  # any key works on a keyless simulator: unknown task

    unknown = await client.get("/v1/midjourney/task_nope", headers=AUTH)
    assert (unknown.status_code, unknown.json()) == (404, {"code": 3, "msg": "task not found"})
    with pytest.raises(ProviderRejected, match="3 days"):
        mart.parse_query(await send(client, mart.build_query("task_nope")))
    assert (await client.get("/v1/tasks/task_nope", headers=AUTH)).status_code == 404

    mine = await submit(client, mart, "imagine", {"prompt": "x"})
    other = ApimartProvider(api_key="sk-other", base_url="http://sim.test")
    with pytest.raises(ProviderRejected, match="another APIMart account") as caught:
        other.parse_query(await send(client, other.build_query(mine)))
    assert caught.value.http_status == 403


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("imagine", {}),
        ("imagine", {"prompt": "x", "stylize": 5000}),
        ("imagine", {"prompt": "x", "speed": "warp"}),
        ("imagine", {"prompt": "x", "image_urls": ["ftp://x"]}),
        ("upscale", {"index": 1}),
        ("upscale", {"task_id": "t", "index": 7}),
        ("zoom", {"task_id": "t", "zoom_ratio": 3}),
        ("pan", {"task_id": "t", "direction": "north"}),
        ("video", {"image_urls": []}),
        ("video", {"image_urls": [URL], "video_type": "hd"}),
        ("blend", {"image_urls": [URL]}),
        ("describe", {}),
        ("edits", {"prompt": "x"}),
        ("modal", {}),
        ("warp", {"prompt": "x"}),
    ],
)
async def test_validation_errors(client: httpx.AsyncClient, path: str, body: Any) -> None:
    response = await client.post(f"/v1/midjourney/generations/{path}", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == 4
    assert response.json()["msg"]


async def test_follow_up_parent_errors(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    missing = mart.build_submit(
        "upscale", {"index": 1, "task_id": "task_nope"}, parent=None, callback_url=None
    )
    with pytest.raises(ProviderRejected) as caught:
        mart.parse_submit(await send(client, missing))
    assert (caught.value.http_status, caught.value.provider_code) == (404, "3")
    running = await submit(client, mart, "imagine", {"prompt": "slow [never]"})
    early = mart.build_submit(
        "upscale", {"index": 1, "task_id": running}, parent=None, callback_url=None
    )
    with pytest.raises(ProviderRejected, match="not SUCCESS"):
        mart.parse_submit(await send(client, early))
    up_id = await upscaled(client, mart)
    twice = mart.build_submit(
        "upscale", {"index": 1, "task_id": up_id}, parent=None, callback_url=None
    )
    with pytest.raises(ProviderRejected, match="single image"):
        mart.parse_submit(await send(client, twice))


async def test_default_generation_entry(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/midjourney/generations", json={"prompt": "x"}, headers=AUTH)
    assert response.json()["data"][0]["status"] == "submitted"


# --- API faults --------------------------------------------------------------------------------


async def test_rate_limit_with_retry_after(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    sim.faults.rate_limit, sim.faults.retry_after = 1, 3
    request = mart.build_submit("imagine", {"prompt": "x"}, parent=None, callback_url=None)
    response = await send(client, request)
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
    with pytest.raises(ProviderUnavailable) as caught:
        mart.parse_submit(response)
    assert caught.value.retry_after == 3.0
    assert mart.parse_submit(await send(client, request)).provider_task_id
    assert sim.faults.injected == {"rate_limit": 1}
    assert sim.request_counts["POST /v1/midjourney/generations/{action}"] == 2
    assert len(sim.apimart.jobs) == 1  # the refused request made nothing


async def test_errors_and_path_prefix(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    task_id = await submit(client, mart, "imagine", {"prompt": "x"})
    sim.faults.errors, sim.faults.path_prefix = 1, "/v2/"
    # Not under the prefix: the APIMart poll goes through and the fault waits.
    assert mart.parse_query(await send(client, mart.build_query(task_id))).status is not None
    frame = await client.get("/v2/jobs/anything", headers={"X-API-Key": APIFRAME_KEY})
    assert frame.status_code == 503
    apiframe = ApiframeProvider(api_key=APIFRAME_KEY, base_url="http://sim.test")
    sim.faults.errors, sim.faults.path_prefix = 1, None
    with pytest.raises(ProviderUnavailable):
        apiframe.parse_query(await send(client, apiframe.build_query("anything")))
    sim.faults.errors = 1
    with pytest.raises(ProviderUnavailable, match="503"):
        mart.parse_query(await send(client, mart.build_query(task_id)))
    assert sim.faults.injected == {"errors": 3}


async def test_hang_then_answer(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    task_id = await submit(client, mart, "imagine", {"prompt": "x"})
    sim.faults.hang, sim.faults.hang_seconds = 1, 30.0
    # The client gives up long before the simulator answers.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await send(client, mart.build_query(task_id))
    assert sim.faults.injected == {"hang": 1}
    assert mart.parse_query(await send(client, mart.build_query(task_id))).status is not None
    # A short hang still ends in a real answer.
    sim.faults.hang, sim.faults.hang_seconds = 1, 0.02
    assert mart.parse_query(await send(client, mart.build_query(task_id))).status is not None
    assert sim.faults.injected == {"hang": 2}


async def test_media_is_never_faulted(sim: Simulator, client: httpx.AsyncClient) -> None:
    sim.faults.errors = 5
    assert (await client.get("/images/x-1.png")).status_code == 200
    assert (await client.get("/videos/x-1.mp4")).status_code == 200
    assert (await client.get("/_faults")).status_code == 200
    assert sim.faults.errors == 5
    assert not sim.faults.injected


async def test_control_route(sim: Simulator, client: httpx.AsyncClient) -> None:
    settings = {
        "rate_limit": 2,
        "errors": 1,
        "hang": 0,
        "hang_seconds": 0.5,
        "retry_after": 4,
        "path_prefix": "/v1/",
        "callbacks": ["dup", "delay=0.1"],
        "modal_new_id": True,
        "missing_paths": ["/v1/gone/"],
    }
    changed = await client.post("/_faults", json=settings)
    assert changed.status_code == 200
    assert changed.json() == {
        **settings,
        "callbacks": ["delay=0.1", "dup"],
        "injected": {},
        "query_delay": 0.0,
        "overlaps": 0,
        "modal_by_poll": False,
    }
    assert (sim.faults.rate_limit, sim.faults.retry_after) == (2, 4.0)
    assert sim.faults.for_prompt("x") == CallbackFaults(dup=True, delay=0.1)
    assert sim.faults.for_prompt("x [drop]").drop

    limited = await client.get("/v1/tasks/x", headers=AUTH)
    assert limited.status_code == 429
    shown = (await client.get("/_faults")).json()
    assert (shown["rate_limit"], shown["injected"]) == (1, {"rate_limit": 1})

    for bad in (
        {"rate_limit": -1},
        {"errors": True},
        {"hang_seconds": "long"},
        {"path_prefix": "v1"},
        {"callbacks": ["explode"]},
        {"callbacks": ["delay=soon"]},
        {"modal_by_poll": 1},
        {"missing_paths": "/v1/tasks/"},
        {"colour": "red"},
        [1],
    ):
        response = await client.post("/_faults", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]
    assert (await client.post("/_faults", content=b"{")).status_code == 400


async def test_control_route_needs_a_key_when_keys_are_set() -> None:
    async with Simulator(api_keys=[KEY], step_seconds=0.01) as sim:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
            assert (await client.get("/_faults")).status_code == 401
            refused = await client.post("/_faults", json={"errors": 1}, headers={"X-API-Key": "no"})
            assert refused.status_code == 401
            assert (await client.get("/_faults", headers=AUTH)).status_code == 200
            ok = await client.post("/_faults", json={"errors": 1}, headers=AUTH)
            assert ok.status_code == 200
            assert sim.faults.errors == 1


async def test_standalone_app_serves_the_control_route() -> None:
    app = create_standalone_app(step_seconds=0.01, modal_timeout_steps=5)
    sim: Simulator = app.state.simulator
    assert sim.apimart.modal_timeout_steps == 5
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            assert (await http.post("/_faults", json={"errors": 2})).json()["errors"] == 2
            assert (await http.get("/v1/tasks/x", headers=AUTH)).status_code == 503


# --- callback faults on the Apiframe simulator -------------------------------------------------


async def apiframe_job(client: httpx.AsyncClient, prompt: str) -> str:
    body = {
        "prompt": prompt,
        "webhookUrl": HOOK,
        "webhookEvents": ["progress", "completed", "failed"],
    }
    response = await client.post(
        "/v2/images/generate", json=body, headers={"X-API-Key": APIFRAME_KEY}
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def settled(sim: Simulator, job_id: str) -> Callable[[], bool]:
    return lambda: sim.apiframe.jobs[job_id].webhook_status is not None


async def test_dup_sends_every_callback_twice(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await apiframe_job(client, "a fox [dup]")
    await eventually(lambda: len(hooks.requests) == 8)
    await eventually(settled(sim, job_id))
    events = hooks.events()
    assert events == ["progress"] * 6 + ["completed"] * 2
    pairs = [hooks.requests[n].content for n in range(0, 8, 2)]
    assert pairs == [hooks.requests[n].content for n in range(1, 8, 2)]
    provider = ApiframeProvider(api_key=APIFRAME_KEY)
    assert all(provider.verify_callback(r.headers, r.content) for r in hooks.requests)
    assert sim.faults.injected == {"dup": 4}


async def test_reorder_sends_the_terminal_first(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await apiframe_job(client, "a fox [reorder]")
    await eventually(lambda: len(hooks.requests) == 4)
    assert hooks.events() == ["completed", "progress", "progress", "progress"]
    assert [json.loads(r.content).get("progress") for r in hooks.requests[1:]] == [25, 50, 75]
    assert sim.apiframe.jobs[job_id].status == "COMPLETED"
    assert sim.faults.injected == {"reorder": 3}


async def test_drop_sends_nothing(sim: Simulator, client: httpx.AsyncClient, hooks: Hooks) -> None:
    job_id = await apiframe_job(client, "a fox [drop]")
    await eventually(lambda: sim.apiframe.jobs[job_id].status == "COMPLETED")
    for _ in range(3):
        await sim.tick()
    assert hooks.requests == []
    assert sim.sent_webhooks == []
    assert sim.faults.injected == {"drop": 4}


async def test_malformed_body_goes_first(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await apiframe_job(client, "a fox [malformed] [fail]")
    await eventually(lambda: len(hooks.requests) == 5)
    first = hooks.requests[0]
    assert first.content == MALFORMED_BODY
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.content)
    # Signed like a real callback, so a receiver gets as far as parsing it.
    assert ApiframeProvider(api_key=APIFRAME_KEY).verify_callback(first.headers, first.content)
    assert [json.loads(r.content)["event"] for r in hooks.requests[1:]] == [
        "progress",
        "progress",
        "progress",
        "failed",
    ]
    assert sim.sent_webhooks[0].event == "malformed"
    await eventually(settled(sim, job_id))
    assert sim.faults.injected == {"malformed": 1}


async def test_delay_holds_each_callback(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    job_id = await apiframe_job(client, "a fox [delay=0.02]")
    assert sim.apiframe.jobs[job_id].faults == CallbackFaults(delay=0.02)
    await eventually(lambda: sim.apiframe.jobs[job_id].status == "COMPLETED")
    await eventually(lambda: len(hooks.requests) == 4)
    assert hooks.events() == ["progress", "progress", "progress", "completed"]
    assert sim.faults.injected == {"delay": 4}


async def test_global_callback_faults(
    sim: Simulator, client: httpx.AsyncClient, hooks: Hooks
) -> None:
    sim.faults.callbacks = {"drop"}
    dropped = await apiframe_job(client, "a fox")
    sim.faults.callbacks = set()
    normal = await apiframe_job(client, "a hare")
    await eventually(settled(sim, normal))
    assert sim.apiframe.jobs[dropped].faults.drop
    assert {json.loads(r.content)["jobId"] for r in hooks.requests} == {normal}


def test_callback_fault_names() -> None:
    parsed = CallbackFaults.parse(["dup", "reorder", "drop", "malformed", "delay=1.5", "delay=0.5"])
    assert parsed == CallbackFaults(dup=True, reorder=True, drop=True, malformed=True, delay=1.5)
    assert parsed.names == ["dup", "reorder", "drop", "malformed", "delay=1.5"]
    for bad in ("dup=1", "delay", "delay=-1", "delay=nan", "loud"):
        with pytest.raises(ValueError, match=r"unknown callback fault|delay"):
            CallbackFaults.parse([bad])


async def test_overlapping_queries_of_one_job_are_counted(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    # The cluster test's witness that no two workers poll one task at once.
    one = await submit(client, mart, "imagine", {"prompt": "x"})
    other = await submit(client, mart, "imagine", {"prompt": "y"})
    sim.faults.configure({"query_delay": 0.2})
    query = functools.partial(send, client)
    await asyncio.gather(query(mart.build_query(one)), query(mart.build_query(other)))
    assert sim.faults.overlaps == 0  # two jobs at once: no overlap
    await asyncio.gather(query(mart.build_query(one)), query(mart.build_query(one)))
    assert sim.faults.overlaps == 1


# --- where the docs allow two readings, the simulator does both -------------------------------


async def inpaint_of(client: httpx.AsyncClient, mart: ApimartProvider, up_id: str) -> str:
    request = mart.build_submit("inpaint", {}, parent=child_of(up_id, "upscale"), callback_url=None)
    return mart.parse_submit(await send(client, request)).provider_task_id


@pytest.mark.parametrize("how", ["marker", "switch"])
async def test_the_modal_call_may_answer_with_a_new_task_id(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider, how: str
) -> None:
    """Seed 000's example: the answer names another task, which is the one that runs; the old
    id stays SUBMITTED for good."""
    old_id = await inpaint_of(client, mart, await upscaled(client, mart))
    prompt = "a red leather sofa"
    if how == "marker":
        prompt += " [newid]"
    else:
        sim.faults.configure({"modal_new_id": True})
    accepted = mart.parse_modal(
        await send(client, mart.build_modal(old_id, {"prompt": prompt, "mask": MASK}))
    )
    new_id = accepted.provider_task_id
    assert new_id is not None and new_id != old_id and new_id.startswith("task_")
    done = await poll(client, mart, new_id)
    assert done.result is not None and len(done.result["images"]) == 4
    # Both shapes serve the new task; the old one never moves again.
    unified = (await client.get(f"/v1/tasks/{new_id}", headers=AUTH)).json()["data"]
    assert unified["status"] == "completed"
    await asyncio.sleep(0.05)
    old = mart.parse_query(await send(client, mart.build_query(old_id)))
    assert (old.status, old.provider_task_id) == (Status.SUBMITTED, old_id)
    with pytest.raises(ProviderRejected, match="not MODAL"):
        mart.parse_modal(await send(client, mart.build_modal(old_id, {})))


async def test_an_inpaint_may_reach_modal_only_through_polling(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    """Seed 002's state machine: submit -> SUBMITTED, then MODAL 15%: the answer says
    `submitted`, and only a poll finds the task waiting for its mask."""
    grid_id = await submit(client, mart, "imagine", {"prompt": "a living room [pollmodal]"})
    await poll(client, mart, grid_id)
    up_id = await submit(client, mart, "upscale", {"index": 1}, child_of(grid_id, "imagine"))
    await poll(client, mart, up_id)
    request = mart.build_submit("inpaint", {}, parent=child_of(up_id, "upscale"), callback_url=None)
    submitted = mart.parse_submit(await send(client, request))
    assert submitted.observation.status is Status.SUBMITTED
    waiting = await poll(client, mart, submitted.provider_task_id, until=Status.MODAL)
    assert waiting.progress == 15
    mart.parse_modal(await send(client, mart.build_modal(submitted.provider_task_id, {})))
    assert (await poll(client, mart, submitted.provider_task_id)).status is Status.SUCCESS
    # The switch does the same for every inpaint, whatever its prompt.
    sim.faults.configure({"modal_by_poll": True})
    switched = mart.parse_submit(await send(client, request))
    assert switched.observation.status is Status.SUBMITTED
    await poll(client, mart, switched.provider_task_id, until=Status.MODAL)


async def test_custom_zoom_enters_modal(client: httpx.AsyncClient, mart: ApimartProvider) -> None:
    """Seed 002: "inpaint / CustomZoom -> MODAL(15%)": the zoom waits for its modal call."""
    up_id = await upscaled(client, mart)
    up = await poll(client, mart, up_id)
    assert up.result is not None
    [custom] = [a for a in up.result["actions"] if a["custom_id"].startswith("MJ::CustomZoom::")]
    request = mart.build_submit(
        "zoom",
        {"custom_id": custom["custom_id"]},
        parent=child_of(up_id, "upscale"),
        callback_url=None,
    )
    submitted = mart.parse_submit(await send(client, request))
    assert (submitted.observation.status, submitted.observation.progress) == (Status.MODAL, 15)
    zoom_id = submitted.provider_task_id
    await poll(client, mart, zoom_id, until=Status.MODAL)
    mart.parse_modal(await send(client, mart.build_modal(zoom_id, {"prompt": "--zoom 1.8"})))
    zoomed = await poll(client, mart, zoom_id)
    assert zoomed.result is not None and len(zoomed.result["images"]) == 4
    # A plain zoom (Zoom Out 1.5x, a ratio) produces its image directly (Flow D).
    plain = await submit(client, mart, "zoom", {"zoom_ratio": 1.5}, child_of(up_id, "upscale"))
    assert (await poll(client, mart, plain)).status is Status.SUCCESS


async def test_both_query_shapes_and_a_missing_one(
    sim: Simulator, client: httpx.AsyncClient, mart: ApimartProvider
) -> None:
    task_id = await submit(client, mart, "imagine", {"prompt": "x"})
    await poll(client, mart, task_id)
    tasks, midjourney = mart.query_requests(task_id, after_modal=True)
    for request in (tasks, midjourney):
        obs = mart.parse_query(await send(client, request))
        assert (obs.status, obs.provider_task_id) == (Status.SUCCESS, task_id)
    sim.faults.configure({"missing_paths": ["/v1/tasks/"]})
    gone = await send(client, tasks)
    assert (gone.status_code, gone.body) == (404, b"Not Found")
    with pytest.raises(ProviderRejected) as caught:
        mart.parse_query(gone)
    assert caught.value.http_status == 404
    assert (await send(client, midjourney)).status_code == 200
    # Only reads: submissions under the same prefix still work.
    sim.faults.configure({"missing_paths": ["/v1/midjourney/"]})
    assert await submit(client, mart, "imagine", {"prompt": "y"})
    assert sim.faults.injected["missing_path"] == 1
