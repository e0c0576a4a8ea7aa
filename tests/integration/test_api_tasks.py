"""The task API in-process, against the embedded simulator speaking Apiframe's wire format."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.providers import simulator_key
from tests.conftest import both_stores, open_app

FOX = {"action": "imagine", "params": {"prompt": "a red fox in snow", "aspect_ratio": "16:9"}}


async def submit(client: httpx.AsyncClient, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    r = await client.post("/v1/tasks", json=body, **kw)
    assert r.status_code == 202, r.text
    task: dict[str, Any] = r.json()
    return task


async def finished(client: httpx.AsyncClient, task_id: str, **kw: Any) -> dict[str, Any]:
    for _ in range(50):
        r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 5}, **kw)
        assert r.status_code == 200, r.text
        task: dict[str, Any] = r.json()
        if task["status"] in ("SUCCESS", "FAILURE", "CANCEL"):
            return task
    raise AssertionError(f"task {task_id} did not finish: {task}")


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


@both_stores
async def test_imagine_runs_to_success_through_signed_callbacks(client: httpx.AsyncClient) -> None:
    task = await submit(client, FOX | {"metadata": {"order": 42}})
    assert task["status"] == "SUBMITTED" and task["provider"] == "simulator"
    assert task["id"].startswith("task_") and task["provider_task_id"]
    done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS" and done["progress"] == 100
    assert len(done["result"]["images"]) == 4 and done["result"]["grid_url"]
    assert done["metadata"] == {"order": 42} and done["finished_at"]

    events = (await client.get(f"/v1/tasks/{task['id']}/events")).json()["data"]
    assert events[0]["source"] == "api" and events[0]["type"] == "submitted"
    callbacks = [e for e in events if e["source"] == "callback"]
    assert [e["type"] for e in callbacks][-1] == "succeeded"
    assert {e["outcome"] for e in callbacks} == {"applied"}
    assert [e["progress"] for e in callbacks if e["type"] == "progress"] == [25, 50, 75]

    # The provider's own id finds the same task, and the image is a real PNG.
    by_provider = (await client.get(f"/v1/tasks/{task['provider_task_id']}")).json()
    assert by_provider["id"] == task["id"]
    image = await client.get(done["result"]["images"][0])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG\r\n\x1a\n")


async def test_upscale_follow_up_names_its_parent(client: httpx.AsyncClient) -> None:
    parent = await finished(client, (await submit(client, FOX))["id"])
    child = await submit(
        client, {"action": "upscale", "parent_id": parent["id"], "params": {"index": 2}}
    )
    assert child["parent_id"] == parent["id"] and child["provider"] == parent["provider"]
    done = await finished(client, child["id"])
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 1


async def test_failure_is_recorded_with_the_provider_message(client: httpx.AsyncClient) -> None:
    task = await submit(client, {"action": "imagine", "params": {"prompt": "x [fail]"}})
    done = await finished(client, task["id"])
    assert done["status"] == "FAILURE"
    assert done["error"]["code"] == "provider_failed"
    assert "content policy" in done["error"]["message"]


async def test_listing_filters_and_pages(client: httpx.AsyncClient) -> None:
    ids = [(await submit(client, FOX))["id"] for _ in range(3)]
    page = (await client.get("/v1/tasks", params={"limit": 2})).json()
    assert [t["id"] for t in page["data"]] == ids[::-1][:2] and page["next_cursor"]
    rest = (await client.get("/v1/tasks", params={"cursor": page["next_cursor"]})).json()
    assert [t["id"] for t in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    only = await client.get(
        "/v1/tasks",
        params={
            "provider": "simulator",
            "action": "imagine",
            "status": "SUBMITTED,IN_PROGRESS,SUCCESS",
        },
    )
    assert len(only.json()["data"]) == 3
    none = await client.get("/v1/tasks", params={"created_after": "2999-01-01T00:00:00Z"})
    assert none.json()["data"] == []
    assert_problem(await client.get("/v1/tasks", params={"colour": "red"}), 422, "colour")
    assert_problem(await client.get("/v1/tasks", params={"limit": 500}), 422, "limit")
    assert_problem(await client.get("/v1/tasks", params={"status": "DONE"}), 422, "status")
    assert_problem(await client.get("/v1/tasks", params={"created_after": "yesterday"}), 422)
    assert_problem(await client.get("/v1/tasks", params={"cursor": "%%%"}), 422, "cursor")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"params": {"prompt": "x"}}, 422, "action"),
        ({"action": "paint", "params": {"prompt": "x"}}, 422, "action"),
        ({"action": "imagine", "provider": "dalle", "params": {"prompt": "x"}}, 422, "provider"),
        ({"action": "imagine", "params": {}}, 422, "params.prompt"),
        ({"action": "imagine", "params": {"prompt": ""}}, 422, "params.prompt"),
        ({"action": "imagine", "params": "fox"}, 422, "params"),
        ({"action": "upscale", "params": {"index": 5}}, 422, "params.index"),
        ({"action": "upscale", "params": {"index": 1}}, 422, "parent_id"),
        ({"action": "imagine", "params": {"prompt": "x"}, "colour": 1}, 422, "colour"),
        (
            {"action": "imagine", "params": {"prompt": "x"}, "callback_url": "ftp://x"},
            422,
            "callback_url",
        ),
        (
            {"action": "imagine", "params": {"prompt": "x"}, "callback_events": ["task.done"]},
            422,
            "callback_events",
        ),
        ({"action": "upscale", "parent_id": "task_nope", "params": {"index": 1}}, 422, "parent_id"),
    ],
)
async def test_bad_submissions_name_the_field_and_write_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, field: str
) -> None:
    assert_problem(await client.post("/v1/tasks", json=body), status, field)
    assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_unreadable_requests(client: httpx.AsyncClient, settings: Settings) -> None:
    assert_problem(
        await client.post(
            "/v1/tasks", content=b"{nope", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert_problem(
        await client.post(
            "/v1/tasks", content=b"[1]", headers={"content-type": "application/json"}
        ),
        400,
    )
    assert_problem(
        await client.post("/v1/tasks", content=b"prompt=x", headers={"content-type": "text/plain"}),
        415,
    )
    big = {"action": "imagine", "params": {"prompt": "x" * (settings.max_upload_bytes + 10)}}
    assert_problem(await client.post("/v1/tasks", json=big), 413)
    assert_problem(await client.get("/v1/tasks/task_01J0000000000000000000000"), 404)
    assert_problem(await client.get("/v1/nothing"), 404)
    assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_follow_up_rules(client: httpx.AsyncClient) -> None:
    running = await submit(client, {"action": "imagine", "params": {"prompt": "slow [never]"}})
    assert_problem(
        await client.post(
            "/v1/tasks",
            json={"action": "upscale", "parent_id": running["id"], "params": {"index": 1}},
        ),
        409,
        "parent_id",
    )
    done = await finished(client, (await submit(client, FOX))["id"])
    assert_problem(
        await client.post(
            "/v1/tasks",
            json={
                "action": "upscale",
                "provider": "apiframe",
                "parent_id": done["id"],
                "params": {"index": 1},
            },
        ),
        422,
        "provider",
    )


async def test_a_provider_refusal_is_kept_as_failure(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/tasks",
        json={
            "action": "upscale",
            "params": {"parent_job_id": "00000000-0000-4000-8000-000000000000", "index": 1},
        },
    )
    body = assert_problem(r, 404)
    assert body["provider_status"] == 404
    kept = (await client.get(f"/v1/tasks/{body['task_id']}")).json()
    assert kept["status"] == "FAILURE" and kept["error"]["code"] == "provider_rejected"


@both_stores
async def test_idempotency_key(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/tasks", json=FOX, headers={"Idempotency-Key": "order-42"})
    again = await client.post("/v1/tasks", json=FOX, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = {"action": "imagine", "params": {"prompt": "a blue fox"}}
    assert_problem(
        await client.post("/v1/tasks", json=other, headers={"Idempotency-Key": "order-42"}), 409
    )
    assert len((await client.get("/v1/tasks")).json()["data"]) == 1


async def test_cancel(client: httpx.AsyncClient) -> None:
    task = await submit(client, {"action": "imagine", "params": {"prompt": "slow [never]"}})
    r = await client.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "CANCEL"
    assert r.json()["error"]["code"] == "cancelled"
    assert_problem(await client.post(f"/v1/tasks/{task['id']}/cancel"), 409)
    assert_problem(await client.post("/v1/tasks/task_nope/cancel"), 404)


async def test_wait_returns_at_once_for_a_finished_task(client: httpx.AsyncClient) -> None:
    done = await finished(client, (await submit(client, FOX))["id"])
    r = await client.get(f"/v1/tasks/{done['id']}", params={"wait": 60})
    assert r.json()["sequence"] == done["sequence"]
    assert_problem(
        await client.get(f"/v1/tasks/{done['id']}", params={"wait": "soon"}), 422, "wait"
    )


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    keyed_settings = replace(settings, api_keys={"alice-key-123": "alice", "bob-key-4567": "bob"})
    async for c in open_app(keyed_settings):
        yield c


async def test_api_keys_scope_tasks_to_their_owner(keyed: httpx.AsyncClient) -> None:
    assert_problem(await keyed.get("/v1/tasks"), 401)
    assert_problem(
        await keyed.get("/v1/tasks", headers={"Authorization": "Bearer wrong-key-1"}), 401
    )
    alice = {"Authorization": "Bearer alice-key-123"}
    bob = {"Authorization": "Bearer bob-key-4567"}
    task = await submit(keyed, FOX, headers=alice)
    assert (await keyed.get(f"/v1/tasks/{task['id']}", headers=alice)).status_code == 200
    assert_problem(await keyed.get(f"/v1/tasks/{task['id']}", headers=bob), 404)
    assert (await keyed.get("/v1/tasks", headers=bob)).json()["data"] == []
    assert (await keyed.get("/healthz")).status_code == 200


async def test_dev_mode_serves_only_loopback(settings: Settings) -> None:
    async for c in open_app(settings):
        remote = httpx.ASGITransport(app=c.app, client=("203.0.113.9", 5000))  # type: ignore[attr-defined]
        async with httpx.AsyncClient(transport=remote, base_url="http://jobhook.test") as outside:
            assert_problem(await outside.get("/v1/tasks"), 403)


async def test_logs_name_what_happened_and_leak_nothing(client: httpx.AsyncClient) -> None:
    mask = base64.b64encode(b"\x89PNG" + bytes(3000)).decode()
    with capture_logs() as logs:
        done = await finished(client, (await submit(client, FOX))["id"])
        up = await finished(
            client,
            (
                await submit(
                    client, {"action": "upscale", "parent_id": done["id"], "params": {"index": 1}}
                )
            )["id"],
        )
        inpaint = await submit(
            client,
            {
                "action": "inpaint",
                "parent_id": up["id"],
                "params": {"mask": mask, "prompt": "a hat"},
            },
        )
        await finished(client, inpaint["id"])
    names = {entry["event"] for entry in logs}
    assert {"task.submitted", "task.transition"} <= names
    # A signed callback is one line, ingest's, carrying the callback's size: no second line.
    called_back = [e for e in logs if e.get("source") == "callback"]
    assert called_back and all(e["callback_bytes"] > 0 for e in called_back)
    assert "callback.received" not in names
    transition = next(e for e in logs if e["event"] == "task.transition")
    assert transition["task_id"] and transition["provider"] and transition["provider_task_id"]
    text = repr(logs)
    key = client.app.state.services.settings  # type: ignore[attr-defined]
    assert mask[:60] not in text and simulator_key(key) not in text
    stored = (await client.get(f"/v1/tasks/{inpaint['id']}")).json()
    assert mask[:60] not in repr(stored) and "base64 mask" in stored["params"]["mask"]
