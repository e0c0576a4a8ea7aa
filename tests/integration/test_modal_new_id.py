"""Where seed 000 reads two ways, end to end through jobhook's API and poller, against the
simulator's APIMart.

The modal call's answer: seed 000's prose says the task id stays the same, its example answers
with another one. jobhook takes either: the same jobhook task follows whichever provider task
the answer names (polled by it, found by it, the old id kept in its history and still found).

Where to poll: seed 002 reads every task at `/v1/midjourney/{id}`, seed 000 polls a task after
its modal call at `/v1/tasks/{id}`. jobhook asks the documented one first, the other when one
answers 404, and remembers which answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from service.simulator import Simulator
from tests.conftest import both_stores
from tests.integration.test_api_tasks import finished, submit
from tests.integration.test_callbacks import events_of

APIMART = "simulator-apimart"
MASK_URL = "https://cdn.example.com/mask.png"


def simulator(client: httpx.AsyncClient) -> Simulator:
    sim: Simulator = client.app.state.simulator  # type: ignore[attr-defined]
    return sim


async def done(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """The task once it has ended; a bound so a task polled at the wrong id fails quickly."""
    async with asyncio.timeout(20):
        return await finished(client, task_id)


async def modal_task(client: httpx.AsyncClient, prompt: str = "a living room") -> dict[str, Any]:
    """Seed 002's flow C up to the mask: imagine, upscale, inpaint -> MODAL."""
    body = {"provider": APIMART, "action": "imagine", "params": {"prompt": prompt}}
    grid = await done(client, (await submit(client, body))["id"])
    up = await submit(
        client, {"action": "upscale", "parent_id": grid["id"], "params": {"index": 1}}
    )
    await done(client, up["id"])
    inpaint = await submit(client, {"action": "inpaint", "parent_id": up["id"], "params": {}})
    assert inpaint["status"] == "MODAL"
    return inpaint


@both_stores
@pytest.mark.parametrize("reading", ["same id", "new id by marker", "new id by switch"])
async def test_the_task_follows_the_provider_task_the_modal_answer_names(
    client: httpx.AsyncClient, reading: str
) -> None:
    sim = simulator(client)
    inpaint = await modal_task(client)
    old = inpaint["provider_task_id"]
    prompt = "a red leather sofa"
    if reading == "new id by marker":
        prompt += " [newid]"
    elif reading == "new id by switch":
        sim.faults.configure({"modal_new_id": True})
    r = await client.post(
        f"/v1/tasks/{inpaint['id']}/modal", json={"prompt": prompt, "mask_url": MASK_URL}
    )
    assert r.status_code == 202, r.text  # accepted (and billed) by APIMart: never a 409
    answered = r.json()
    assert (answered["id"], answered["status"]) == (inpaint["id"], "SUBMITTED")
    new = answered["provider_task_id"]
    assert (new == old) == (reading == "same id")

    task = await done(client, inpaint["id"])
    assert (task["status"], task["provider_task_id"]) == ("SUCCESS", new)
    assert len(task["result"]["images"]) == 4
    # Found by either provider id, as by its own.
    for ref in (new, old):
        found = await client.get(f"/v1/tasks/{ref}")
        assert found.status_code == 200 and found.json()["id"] == inpaint["id"]

    events = await events_of(client, inpaint["id"])
    # Nothing refused as another task's: a poll of the MODAL task is a duplicate, one of the
    # old provider task still under way when the answer came is stale.
    assert {e["outcome"] for e in events} <= {"applied", "duplicate", "stale"}
    [call] = [e for e in events if e["source"] == "api" and e["from_status"] == "MODAL"]
    assert call["detail"]["provider_task_id"] == new
    if new == old:
        assert "previous_provider_task_id" not in call["detail"]
    else:
        assert call["detail"]["previous_provider_task_id"] == old
        assert "new provider task" in call["detail"]["note"]
        # The old provider task never runs (the simulator leaves it SUBMITTED): only the new
        # one could have brought the task to SUCCESS.
        assert sim.apimart.jobs[old].status == "SUBMITTED"
    moved = [e for e in events if e["source"] == "poll" and e["outcome"] == "applied"]
    moved = [e for e in moved if e["received_at"] > call["received_at"]]
    assert moved and {e["detail"]["provider_task_id"] for e in moved} == {new}


async def test_after_the_modal_call_the_task_is_polled_where_seed_000_says(
    client: httpx.AsyncClient,
) -> None:
    sim = simulator(client)
    inpaint = await modal_task(client)
    # Everything so far was read the way seed 002 reads tasks.
    assert sim.request_counts["GET /v1/tasks/{id}"] == 0
    read_before = sim.request_counts["GET /v1/midjourney/{id}"]
    assert read_before > 0
    r = await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"mask_url": MASK_URL})
    assert r.status_code == 202, r.text
    task = await done(client, inpaint["id"])
    assert task["status"] == "SUCCESS" and len(task["result"]["images"]) == 4
    assert sim.request_counts["GET /v1/tasks/{id}"] >= 1
    # At most one poll claimed while the task was still MODAL may have gone the old way.
    assert sim.request_counts["GET /v1/midjourney/{id}"] - read_before <= 1


@pytest.mark.parametrize("missing", ["/v1/tasks/", "/v1/midjourney/"])
async def test_a_query_shape_that_answers_404_is_left_for_the_other(
    client: httpx.AsyncClient, missing: str
) -> None:
    """A deployment without one of the two shapes: each task still runs to its end, and the
    missing shape is asked once, then left alone (the adapter remembers)."""
    sim = simulator(client)
    sim.faults.configure({"missing_paths": [missing]})
    inpaint = await modal_task(client)
    r = await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"mask_url": MASK_URL})
    assert r.status_code == 202, r.text
    task = await done(client, inpaint["id"])
    assert task["status"] == "SUCCESS" and len(task["result"]["images"]) == 4
    assert sim.faults.injected["missing_path"] == 1
    events = await events_of(client, inpaint["id"])
    assert {e["outcome"] for e in events} <= {"applied", "duplicate", "stale"}


async def test_a_task_neither_shape_knows_is_lost(client: httpx.AsyncClient) -> None:
    sim = simulator(client)
    body = {"provider": APIMART, "action": "imagine", "params": {"prompt": "a fox [never]"}}
    task = await submit(client, body)
    del sim.apimart.jobs[task["provider_task_id"]]  # expired: APIMart keeps tasks 3 days
    lost = await done(client, task["id"])
    assert (lost["status"], lost["error"]["code"]) == ("FAILURE", "provider_lost")
