"""End to end over real HTTP: uvicorn, the simulator in its own process, signed webhooks back."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.e2e.conftest import Process


def wait_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    for _ in range(60):
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}", params={"wait": 5}).json()
        if task["status"] in ("SUCCESS", "FAILURE", "CANCEL"):
            return task
    raise AssertionError(f"{task_id} never finished: {task}")


def test_imagine_then_upsample_on_apiframe_wire_format(stack: tuple[Process, Process]) -> None:
    jobhook, sim = stack
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        r = client.post(
            "/v1/tasks",
            json={
                "provider": "apiframe",
                "action": "imagine",
                "params": {"prompt": "a red fox in snow", "aspect_ratio": "16:9"},
            },
        )
        assert r.status_code == 202, r.text
        imagine = wait_done(client, r.json()["id"])
        assert imagine["status"] == "SUCCESS" and imagine["progress"] == 100
        assert len(imagine["result"]["images"]) == 4 and imagine["result"]["grid_url"]
        assert imagine["result"]["grid_url"].startswith(sim.url)
        png = httpx.get(imagine["result"]["images"][0])
        assert png.content.startswith(b"\x89PNG")

        r = client.post(
            "/v1/tasks",
            json={"action": "upscale", "parent_id": imagine["id"], "params": {"index": 2}},
        )
        assert r.status_code == 202, r.text
        upscale = wait_done(client, r.json()["id"])
        assert upscale["status"] == "SUCCESS" and upscale["provider"] == "apiframe"
        events = client.get(f"/v1/tasks/{upscale['id']}/events").json()["data"]
        assert events[0]["source"] == "api"
        assert events[-1]["type"] == "succeeded" and events[-1]["source"] == "callback"

    records = [orjson.loads(line) for line in jobhook.lines() if line.startswith("{")]
    names = [r["event"] for r in records]
    assert "task.submitted" in names and "callback.received" in names
    assert all({"event", "level", "timestamp"} <= r.keys() for r in records)
    assert "afk_e2e_secret_key" not in jobhook.log.read_text()


def test_embedded_simulator_is_the_default_provider(stack: tuple[Process, Process]) -> None:
    jobhook, _ = stack
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        r = client.post("/v1/tasks", json={"action": "imagine", "params": {"prompt": "a cat"}})
        assert r.status_code == 202, r.text
        assert r.json()["provider"] == "simulator"
        done = wait_done(client, r.json()["id"])
        assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
        providers = client.get("/readyz").json()["providers"]
        assert {"apiframe", "simulator", "simulator-apimart", "simulator-vtrix"} == set(providers)
