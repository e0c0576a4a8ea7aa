"""The midjourney-proxy compatible front, driven by a client written from midjourney-proxy's
documented API (novicezk/midjourney-proxy's README and docs/api.md; the action/modal API of
midjourney-proxy-plus), not from jobhook's code: `mj-api-secret`, `/mj/submit/*` answering
`{code, description, result, properties}`, `/mj/task/*` in their task shape, notifyHook bodies.
Against the simulator's APIMart (`simulator-apimart`, which has the two-step inpaint).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from service.config import Settings
from service.web.openapi import spec
from tests.conftest import both_stores, open_app
from tests.support.receiver import Receiver, free_port, running
from tests.support.wait import eventually

KEY = "mj-test-key-0123456789abcdef"
SECRET = {"mj-api-secret": KEY}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
#: what midjourney-proxy calls submitted (1) and queued (22): both mean "the task is in"
ACCEPTED = (1, 22)


@pytest.fixture
async def mj(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """jobhook with one API key, serving /mj on the simulator's APIMart."""
    configured = dataclasses.replace(
        settings, api_keys={KEY: "team-mj"}, default_provider="simulator-apimart"
    )
    async for client in open_app(configured):
        client.headers.update(SECRET)
        yield client


# --- a midjourney-proxy client -------------------------------------------------------------


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post(f"/mj{path}", json=body)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert set(answer) == {"code", "description", "result", "properties"}, answer
    return answer


async def fetch(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    r = await client.get(f"/mj/task/{task_id}/fetch")
    assert r.status_code == 200, r.text
    task: dict[str, Any] = r.json()
    return task


async def until(client: httpx.AsyncClient, task_id: str, *statuses: str) -> dict[str, Any]:
    """Poll fetch (as midjourney-proxy clients do) until the task is in one of `statuses`."""
    async with asyncio.timeout(30):
        while True:
            task = await fetch(client, task_id)
            if task["status"] in statuses:
                return task
            assert task["status"] not in ("FAILURE", "CANCEL"), task
            # jobhook's long-poll, only to wake the test on the change instead of sleeping
            await client.get(f"/v1/tasks/{task_id}", params={"wait": 2}, headers=BEARER)


BEARER = {"Authorization": f"Bearer {KEY}"}


def button(task: dict[str, Any], starts: str, label: str | None = None) -> str:
    for b in task["buttons"]:
        if b["customId"].startswith(starts) and (label is None or b["label"] == label):
            assert set(b) == {"customId", "emoji", "label", "type", "style"}
            custom_id: str = b["customId"]
            return custom_id
    raise AssertionError(f"no button {starts} {label} in {task['buttons']}")


def assert_task_shape(task: dict[str, Any]) -> None:
    for name in (
        "id",
        "action",
        "status",
        "prompt",
        "promptEn",
        "description",
        "state",
        "submitTime",
        "startTime",
        "finishTime",
        "imageUrl",
        "progress",
        "failReason",
        "buttons",
        "properties",
    ):
        assert name in task, name
    assert task["progress"].endswith("%")
    assert isinstance(task["submitTime"], int)


# --- the flows -----------------------------------------------------------------------------


@both_stores
async def test_imagine_upscale_inpaint_modal_with_notify_hook(mj: httpx.AsyncClient) -> None:
    async with running(Receiver(free_port())) as backend:
        hook = backend.url("/mj-notify")
        answer = await post(
            mj, "/submit/imagine", {"prompt": "a lighthouse", "notifyHook": hook, "state": "s1"}
        )
        assert answer["code"] in ACCEPTED, answer
        grid = await until(mj, answer["result"], "SUCCESS")
        assert_task_shape(grid)
        assert grid["action"] == "IMAGINE" and grid["state"] == "s1"
        assert grid["description"] == "/imagine a lighthouse" and grid["progress"] == "100%"
        assert grid["imageUrl"] and grid["finishTime"] >= grid["submitTime"]
        assert grid["properties"]["finalPrompt"] == "a lighthouse"

        u2 = await post(
            mj,
            "/submit/action",
            {
                "taskId": grid["id"],
                "customId": button(grid, "MJ::JOB::upsample::2"),
                "notifyHook": hook,
            },
        )
        assert u2["code"] in ACCEPTED, u2
        up = await until(mj, u2["result"], "SUCCESS")
        assert up["action"] == "UPSCALE" and up["prompt"] == "a lighthouse"

        inpaint = await post(
            mj,
            "/submit/action",
            {"taskId": up["id"], "customId": button(up, "MJ::Inpaint::"), "notifyHook": hook},
        )
        assert inpaint["code"] == 21, inpaint  # waiting for the modal window
        assert (await fetch(mj, inpaint["result"]))["status"] == "MODAL"
        mask = "data:image/png;base64," + base64.b64encode(PNG).decode()
        modal = await post(
            mj,
            "/submit/modal",
            {"taskId": inpaint["result"], "prompt": "a red door", "maskBase64": mask},
        )
        assert modal["code"] == 1 and modal["result"] == inpaint["result"], modal
        done = await until(mj, inpaint["result"], "SUCCESS")
        assert done["imageUrl"]

        # The notifyHook heard each change of each task, in midjourney-proxy's task shape,
        # signed as every jobhook delivery is.
        def heard(task_id: str) -> list[str]:
            return [
                orjson.loads(r.body)["status"]
                for r in backend.received
                if orjson.loads(r.body)["id"] == task_id
            ]

        await eventually(
            lambda: all("SUCCESS" in heard(t) for t in (grid["id"], up["id"], inpaint["result"])),
            seconds=20,
        )
        assert "MODAL" in heard(inpaint["result"])
        for r in backend.received:
            assert r.path == "/mj-notify"
            assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(r.headers)
            assert_task_shape(orjson.loads(r.body))
        for task_id in (grid["id"], up["id"], inpaint["result"]):
            statuses = heard(task_id)
            assert statuses[-1] == "SUCCESS" and statuses.count("SUCCESS") == 1, statuses


async def test_new_api_pattern_submit_then_list_by_condition(mj: httpx.AsyncClient) -> None:
    answer = await post(mj, "/submit/imagine", {"prompt": "a fox", "botType": "MID_JOURNEY"})
    assert answer["code"] in ACCEPTED
    ids = [answer["result"]]
    async with asyncio.timeout(30):
        while True:
            r = await mj.post("/mj/task/list-by-condition", json={"ids": [*ids, "task_nope"]})
            assert r.status_code == 200, r.text
            tasks = r.json()
            assert [t["id"] for t in tasks] == ids  # an unknown id is left out
            if tasks[0]["status"] == "SUCCESS":
                break
            await mj.get(f"/v1/tasks/{ids[0]}", params={"wait": 2}, headers=BEARER)
    assert tasks[0]["buttons"]
    # The same task is an ordinary jobhook task.
    v1 = (await mj.get(f"/v1/tasks/{ids[0]}", headers=BEARER)).json()
    assert v1["status"] == "SUCCESS" and v1["provider"] == "simulator-apimart"
    listed = (await mj.get("/mj/task/list")).json()
    assert [t["id"] for t in listed] == ids


async def test_change_and_simple_change(mj: httpx.AsyncClient) -> None:
    grid = await until(
        mj, (await post(mj, "/submit/imagine", {"prompt": "a cat"}))["result"], "SUCCESS"
    )
    change = await post(
        mj, "/submit/change", {"taskId": grid["id"], "action": "VARIATION", "index": 3}
    )
    assert change["code"] in ACCEPTED, change
    varied = await until(mj, change["result"], "SUCCESS")
    assert varied["action"] == "VARIATION" and varied["description"] == f"/up {grid['id']} V3"
    simple = await post(mj, "/submit/simple-change", {"content": f"{grid['id']} U1"})
    assert simple["code"] in ACCEPTED, simple
    assert (await until(mj, simple["result"], "SUCCESS"))["action"] == "UPSCALE"


async def test_cancel(mj: httpx.AsyncClient) -> None:
    answer = await post(mj, "/submit/imagine", {"prompt": "a slow cat [never]"})
    r = await mj.post(f"/mj/task/{answer['result']}/cancel")
    assert r.status_code == 200 and r.json()["code"] == 1, r.text
    task = await fetch(mj, answer["result"])
    assert task["status"] == "CANCEL" and task["failReason"]
    again = (await mj.post(f"/mj/task/{answer['result']}/cancel")).json()
    assert again["code"] == 4
    assert (await mj.post("/mj/task/task_nope/cancel")).json()["code"] == 3


# --- bad input: their error shape, code 4, the field named ---------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field", "status"),
    [
        ("/submit/imagine", {}, "prompt", 200),
        ("/submit/imagine", {"prompt": "  "}, "prompt", 200),
        ("/submit/imagine", {"prompt": 5}, "prompt", 400),
        ("/submit/imagine", {"prompt": "x", "botType": "DALL_E"}, "botType", 200),
        ("/submit/imagine", {"prompt": "x", "notifyHook": "ftp://x"}, "notifyHook", 200),
        (
            "/submit/imagine",
            {"prompt": "x", "base64Array": ["data:image/png;base64,AAAA"]},
            "base64Array[0]",
            200,
        ),
        ("/submit/change", {"taskId": "t", "action": "ZOOM", "index": 1}, "action", 200),
        ("/submit/change", {"taskId": "t", "action": "UPSCALE", "index": 9}, "index", 200),
        ("/submit/change", {"taskId": "t", "action": "UPSCALE", "index": "2"}, "index", 400),
        ("/submit/simple-change", {"content": "nope"}, "content", 200),
        ("/submit/action", {"taskId": "t"}, "customId", 200),
        ("/submit/modal", {}, "taskId", 200),
        ("/submit/blend", {"base64Array": ["x"]}, "base64Array", 200),
        ("/submit/describe", {}, "base64", 200),
    ],
)
async def test_bad_input_is_code_4_naming_the_field(
    mj: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, status: int
) -> None:
    r = await mj.post(f"/mj{path}", json=body)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["code"] == 4 and answer["description"].startswith(f"{field}:"), answer
    assert answer["result"] is None
    assert (await mj.get("/v1/tasks", headers=BEARER)).json()["data"] == []


async def test_unknown_task_is_code_3(mj: httpx.AsyncClient) -> None:
    answer = await post(
        mj, "/submit/action", {"taskId": "task_nope", "customId": "MJ::JOB::upsample::1::x"}
    )
    assert answer["code"] == 3
    assert (await mj.get("/mj/task/task_nope/fetch")).status_code == 404


async def test_the_secret_is_a_jobhook_api_key(mj: httpx.AsyncClient) -> None:
    bad = await mj.post(
        "/mj/submit/imagine", json={"prompt": "x"}, headers={"mj-api-secret": "wrong"}
    )
    assert bad.status_code == 401
    del mj.headers["mj-api-secret"]
    assert (await mj.get("/mj/task/list")).status_code == 401
    assert (await mj.get("/mj/task/list", headers=BEARER)).status_code == 200


async def test_dev_mode_needs_no_header(client: httpx.AsyncClient) -> None:
    r = await client.post("/mj/submit/imagine", json={"prompt": "a fox"})
    assert r.status_code == 200 and r.json()["code"] in ACCEPTED, r.text
    assert (await client.get(f"/mj/task/{r.json()['result']}/fetch")).json()["action"] == "IMAGINE"


def test_the_front_is_in_the_openapi_document_under_its_tag() -> None:
    keyed = spec(dev_mode=False)
    op = keyed["paths"]["/mj/submit/imagine"]["post"]
    assert op["tags"] == ["midjourney-proxy"]
    assert op["security"] == [{"mjApiSecret": []}, {"bearer": []}]
    assert keyed["components"]["securitySchemes"]["mjApiSecret"]["name"] == "mj-api-secret"
    assert "security" not in spec(dev_mode=True)["paths"]["/mj/task/list"]["get"]
