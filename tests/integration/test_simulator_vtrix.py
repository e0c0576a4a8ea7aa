"""The simulator's Vtrix driven through the Vtrix adapter: requests built by VtrixProvider, answered
by the simulator over ASGI, parsed back; the documented error codes, the task clock, and the
unsigned callbacks it posts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from service.domain.models import Observation
from service.domain.status import Status
from service.errors import ProviderRejected, ProviderUnavailable
from service.providers.base import ProviderRequest, ProviderResponse
from service.providers.vtrix import VtrixProvider
from service.simulator import Simulator
from service.simulator.png import PNG_SIGNATURE
from service.simulator.vtrix import VtrixSimulator

KEY = "vtx_sim_key"
HOOK = "https://backend.test/hooks/vtrix"
MASK_URL = "https://cdn.example.com/mask.png"
AREA = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500]}


class Hooks:
    """The callback receiver: records requests and answers 200."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


class Vtrix:
    """The simulator's Vtrix and a client bound to it."""

    def __init__(self, sim: Simulator, state: VtrixSimulator, http: httpx.AsyncClient) -> None:
        self.sim = sim
        self.state = state
        self.http = http
        self.provider = VtrixProvider(api_key=KEY, base_url="http://sim.test", name="vtrix")

    async def send(self, request: ProviderRequest, key: str = KEY) -> ProviderResponse:
        headers = {**request.headers, "Authorization": f"Bearer {key}"}
        response = await self.http.request(
            request.method, request.path, json=request.json, headers=headers
        )
        return ProviderResponse(
            status_code=response.status_code, headers=response.headers, body=response.content
        )

    async def submit(
        self, action: str, params: dict[str, Any], callback_url: str | None = None
    ) -> str:
        request = self.provider.build_submit(action, params, parent=None, callback_url=callback_url)
        submitted = self.provider.parse_submit(await self.send(request))
        assert submitted.observation.status is Status.SUBMITTED
        return submitted.provider_task_id

    async def query(self, task_id: str) -> Observation:
        return self.provider.parse_query(await self.send(self.provider.build_query(task_id)))

    async def poll_until(
        self, task_id: str, done: Callable[[Observation], bool]
    ) -> list[Observation]:
        seen: list[Observation] = []
        async with asyncio.timeout(5):
            while True:
                seen.append(await self.query(task_id))
                if done(seen[-1]):
                    return seen
                await asyncio.sleep(0.005)


@pytest.fixture
def hooks() -> Hooks:
    return Hooks()


@pytest.fixture
async def vtrix(hooks: Hooks) -> AsyncIterator[Vtrix]:
    async with Simulator(
        seed=11, step_seconds=0.01, transport=httpx.MockTransport(hooks.handler)
    ) as sim:
        # Once app.py wires Vtrix into the Simulator its own app serves it; until then, these
        # routes go in front of the simulator's app (which serves the images).
        state = getattr(sim, "vtrix", None)
        if isinstance(state, VtrixSimulator):
            app: Starlette = sim.app
        else:
            state = VtrixSimulator(sim)
            app = Starlette(routes=[*state.routes(), Mount("/", app=sim.app)])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            yield Vtrix(sim, state, http)


def terminal(obs: Observation) -> bool:
    return obs.status in (Status.SUCCESS, Status.FAILURE)


async def eventually(check: Callable[[], bool]) -> None:
    # A generous bound only so a broken clock fails the test instead of hanging it.
    async with asyncio.timeout(5):
        while True:
            if check():
                return
            await asyncio.sleep(0.005)


async def test_inpaint_runs_to_success(vtrix: Vtrix) -> None:
    params = {"index": 2, "prompt": "a red hat", "mask_url": MASK_URL, "job_id": "mj-ext-1"}
    task_id = await vtrix.submit("inpaint", params)
    task = vtrix.state.tasks[task_id]
    assert (task.model, task.job_id, task.image_no) == ("midjourney_inpaint", "mj-ext-1", 1)
    assert "mj-ext-1" in vtrix.state.external_parents

    seen = await vtrix.poll_until(task_id, terminal)
    final = seen[-1]
    assert (final.status, final.progress, final.provider_task_id) == (Status.SUCCESS, 100, task_id)
    progress = [obs.progress for obs in seen if obs.status is Status.IN_PROGRESS]
    assert progress == sorted(progress)
    assert set(progress) <= {25, 50, 75}
    assert final.result is not None
    images = final.result["images"]
    assert images == [f"http://sim.test/images/{task_id}-{n}.png" for n in range(1, 5)]
    assert (final.result["videos"], final.result["grid_url"]) == ([], None)
    assert final.result["cost"] == {"usd": "0.05", "discount": 0}
    picture = await vtrix.http.get(images[0])
    assert picture.status_code == 200
    assert picture.content.startswith(PNG_SIGNATURE)


async def test_a_task_can_parent_another(vtrix: Vtrix) -> None:
    first = await vtrix.submit("remix", {"index": 1, "prompt": "night", "job_id": "mj-ext-2"})
    await vtrix.poll_until(first, terminal)
    params = {"index": 4, "mask_areas": [AREA], "job_id": first}
    second = await vtrix.submit("uploadpaint", params)
    assert vtrix.state.tasks[second].image_no == 3
    assert first not in vtrix.state.external_parents
    assert (await vtrix.poll_until(second, terminal))[-1].status is Status.SUCCESS


async def test_failure_path(vtrix: Vtrix) -> None:
    task_id = await vtrix.submit(
        "inpaint", {"index": 1, "prompt": "[fail] a hat", "mask_url": MASK_URL, "job_id": "j"}
    )
    final = (await vtrix.poll_until(task_id, terminal))[-1]
    assert final.status is Status.FAILURE
    assert final.error == {
        "code": "provider_failed",
        "message": "Generation failed",
        "provider_code": "004006098",
    }
    assert final.result is None
    raw = (await vtrix.http.get(f"/model/v1/generation/task/{task_id}", headers=auth())).json()
    assert raw["error"] == {"code": 4006098, "error_message": "Generation failed"}
    assert "usage" not in raw
    assert "output" not in raw


async def test_never_marker_stays_in_progress(vtrix: Vtrix) -> None:
    task_id = await vtrix.submit("remix", {"index": 1, "prompt": "[never]", "job_id": "j"})
    await eventually(lambda: vtrix.state.tasks[task_id].progress == 0.75)
    for _ in range(5):
        await vtrix.sim.tick()
    obs = await vtrix.query(task_id)
    assert (obs.status, obs.progress) == (Status.IN_PROGRESS, 75)


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


BASE = {"model": "midjourney_inpaint", "jobId": "j", "imageNo": 0, "mask": {"url": MASK_URL}}


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"jobId": None}, "004006001", "parent_id"),
        ({"jobId": ""}, "004006001", "parent_id"),
        ({"imageNo": None}, "004006002", "params.index"),
        ({"imageNo": 4}, "004006003", "params.index"),
        ({"imageNo": 1.0}, "004006003", "params.index"),
        ({"remixPrompt": ""}, "004006004", "params.prompt"),
        ({"remixPrompt": "x" * 8193}, "004006004", "params.prompt"),
        ({"mask": None}, "004006005", None),
        ({"mask": {}}, "004006006", None),
        ({"mask": {"url": "ftp://x"}}, "004006006", None),
        ({"mask": {"areas": [{**AREA, "width": 100}]}}, "004006006", None),
        ({"mask": {"areas": [{**AREA, "points": [1, 2, 3]}]}}, "004006006", None),
        ({"callback": "not a url"}, "004006007", None),
    ],
)
async def test_validation_errors_map_to_provider_codes(
    vtrix: Vtrix, changes: dict[str, Any], code: str, field: str | None
) -> None:
    body = {key: value for key, value in {**BASE, **changes}.items() if value is not None}
    request = ProviderRequest(method="POST", path="/model/v1/generation", json=body)
    response = await vtrix.send(request)
    assert response.status_code == 400
    wire = json.loads(response.body)["error"]
    assert wire["code"] == int(code)  # printed as an int: the leading zeros are lost
    with pytest.raises(ProviderRejected) as caught:
        vtrix.provider.parse_submit(response)
    assert (caught.value.http_status, caught.value.provider_code) == (400, code)
    assert caught.value.detail == wire["error_message"]
    assert caught.value.field == field
    assert not vtrix.state.tasks


async def test_masks_are_optional_for_edit_and_remix(vtrix: Vtrix) -> None:
    for model in ("midjourney_edit", "midjourney_remix"):
        body = {"model": model, "jobId": "j", "imageNo": 2}
        response = await vtrix.http.post("/model/v1/generation", json=body, headers=auth())
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "pending"
    body = {"model": "midjourney_uploadpaint", "jobId": "j", "imageNo": 2}
    response = await vtrix.http.post("/model/v1/generation", json=body, headers=auth())
    assert response.status_code == 400
    assert response.json()["error"] == {"code": 4006005, "error_message": "Mask parameters missing"}


async def test_older_wrapped_form_is_accepted(vtrix: Vtrix) -> None:
    params = {key: value for key, value in BASE.items() if key != "model"}
    body = {"model": "midjourney_inpaint", "input": [{"params": params}]}
    response = await vtrix.http.post("/model/v1/generation", json=body, headers=auth())
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "midjourney_inpaint"


async def test_bad_bodies_and_models(vtrix: Vtrix) -> None:
    garbage = await vtrix.http.post("/model/v1/generation", content=b"{", headers=auth())
    assert garbage.status_code == 400
    with pytest.raises(ProviderRejected):
        vtrix.provider.parse_submit(
            ProviderResponse(status_code=400, headers=garbage.headers, body=garbage.content)
        )
    other = await vtrix.http.post(
        "/model/v1/generation", json={**BASE, "model": "flux"}, headers=auth()
    )
    assert other.status_code == 400


async def test_auth_and_unknown_tasks(vtrix: Vtrix) -> None:
    request = vtrix.provider.build_submit(
        "remix", {"index": 1, "prompt": "p", "job_id": "j"}, parent=None, callback_url=None
    )
    missing = await vtrix.http.post("/model/v1/generation", json=request.json)
    assert missing.status_code == 401
    assert missing.json() == {"error": {"code": 401, "error_message": "Invalid API key"}}
    with pytest.raises(ProviderRejected) as caught:
        vtrix.provider.parse_submit(await vtrix.send(request, key=""))
    assert (caught.value.http_status, caught.value.detail) == (401, "Vtrix rejected the API key")

    with pytest.raises(ProviderRejected) as unknown:
        await vtrix.query("no-such-task")
    assert unknown.value.http_status == 404
    task_id = await vtrix.submit("remix", {"index": 1, "prompt": "p", "job_id": "j"})
    with pytest.raises(ProviderUnavailable, match="API key"):
        vtrix.provider.parse_query(await vtrix.send(vtrix.provider.build_query(task_id), key=""))


async def test_tasks_are_private_to_their_key() -> None:
    async with Simulator(api_keys=["vtx_a", "vtx_b"], step_seconds=0.01) as sim:
        app = Starlette(routes=VtrixSimulator(sim).routes())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as http:
            wrong = await http.post("/model/v1/generation", json=BASE, headers=auth())
            assert wrong.status_code == 401
            made = await http.post("/model/v1/generation", json=BASE, headers=auth("vtx_a"))
            assert made.status_code == 200
            path = f"/model/v1/generation/task/{made.json()['id']}"
            assert (await http.get(path, headers=auth("vtx_a"))).status_code == 200
            assert (await http.get(path, headers=auth("vtx_b"))).status_code == 404


async def test_unsigned_callbacks_are_sent_at_each_change(vtrix: Vtrix, hooks: Hooks) -> None:
    params = {"index": 3, "prompt": "a hat", "mask_areas": [AREA], "job_id": "j"}
    task_id = await vtrix.submit("inpaint", params, callback_url=HOOK)
    await eventually(lambda: len(hooks.requests) == 4)
    bodies = hooks.bodies()
    assert [(b["status"], b.get("progress")) for b in bodies] == [
        ("in_progress", 0.25),
        ("in_progress", 0.5),
        ("in_progress", 0.75),
        ("completed", 1),
    ]
    final = (await vtrix.http.get(f"/model/v1/generation/task/{task_id}", headers=auth())).json()
    assert bodies[-1] == final
    for request in hooks.requests:
        assert str(request.url) == HOOK
        assert request.headers["content-type"] == "application/json"
        assert not any("signature" in name.lower() for name in request.headers)
        assert vtrix.provider.verify_callback(request.headers, request.content)
        [hint] = vtrix.provider.parse_callback(request.headers, request.content)
        assert (hint.provider_task_id, hint.source) == (task_id, "callback")
    assert {w.event for w in vtrix.sim.sent_webhooks} == {"in_progress", "completed"}
    assert all(w.delivered for w in vtrix.sim.sent_webhooks)


async def test_failed_callback_and_none_without_a_url(vtrix: Vtrix, hooks: Hooks) -> None:
    quiet = await vtrix.submit("remix", {"index": 1, "prompt": "p", "job_id": "j"})
    loud = await vtrix.submit(
        "remix", {"index": 1, "prompt": "[fail]", "job_id": "j"}, callback_url=HOOK
    )
    await vtrix.poll_until(quiet, terminal)
    await eventually(lambda: len(hooks.requests) == 4)
    last = hooks.bodies()[-1]
    assert (last["id"], last["status"]) == (loud, "failed")
    assert all(body["id"] == loud for body in hooks.bodies())
