"""midjourney-proxy's task shape of a jobhook task, and the planner sending it to a notifyHook."""

from __future__ import annotations

import orjson

from service.domain.mj import MARK, buttons, mj_task
from service.domain.models import Observation, empty_result
from service.domain.plan import Snapshot, Subscriber, plan
from service.domain.status import Status
from service.web.mj import custom_action
from tests.unit.test_plan import EPOCH, NOW, row

MARKED = {MARK: {"state": "s1", "description": "/imagine x", "notify_hook": True}}


def test_the_notify_hook_hears_the_mj_shape_and_endpoints_jobhooks() -> None:
    snapshot = Snapshot(
        task=row(metadata=MARKED),
        seen=0,
        subscribers=(Subscriber(id="ep_1", url="https://hooks.example.com/ep"),),
    )
    result = empty_result() | {"images": ["https://cdn.example.com/1.png"]}
    change = plan(
        snapshot,
        Observation(status=Status.SUCCESS, source="poll", progress=100, result=result),
        schedule=None,
        now=NOW,
        now_epoch=EPOCH,
    )
    bodies = {o.subscriber: orjson.loads(o.payload) for o in change.outbox}
    hook, endpoint = bodies["task"], bodies["ep_1"]
    assert endpoint["type"] == "task.succeeded" and endpoint["data"]["id"] == "task_1"
    assert hook["id"] == "task_1" and hook["status"] == "SUCCESS" and hook["state"] == "s1"
    assert hook["progress"] == "100%" and hook["imageUrl"] == "https://cdn.example.com/1.png"
    assert hook["finishTime"] == hook["submitTime"]  # both NOW, in epoch ms
    assert hook["properties"]["notifyHook"] == "https://hooks.example.com/a"
    # U1..U4, reroll, V1..V4 for a provider that shows no buttons of its own
    assert [b["label"] for b in hook["buttons"]][:4] == ["U1", "U2", "U3", "U4"]


def test_an_unmarked_task_keeps_jobhooks_body() -> None:
    change = plan(
        Snapshot(task=row(), seen=0),
        Observation(status=Status.SUCCESS, source="poll", progress=100),
        schedule=None,
        now=NOW,
        now_epoch=EPOCH,
    )
    assert orjson.loads(change.outbox[0].payload)["type"] == "task.succeeded"


def test_the_providers_buttons_are_shown_as_midjourney_proxys() -> None:
    task = row(
        status="SUCCESS",
        result=empty_result()
        | {"actions": [{"label": "U1", "custom_id": "MJ::JOB::upsample::1::h"}]},
    )
    assert buttons(task) == [
        {"customId": "MJ::JOB::upsample::1::h", "emoji": "", "label": "U1", "type": 2, "style": 2}
    ]
    assert mj_task(row(status="FAILURE", error={"message": "banned"}))["failReason"] == "banned"


def test_button_ids_as_midjourney_proxy_reads_them() -> None:
    assert custom_action("MJ::JOB::upsample::2::h") == ("upscale", {"index": 2})
    assert custom_action("MJ::JOB::variation::4::h") == ("variation", {"index": 4})
    assert custom_action("MJ::JOB::reroll::0::h::SOLO") == ("reroll", {})
    assert custom_action("MJ::JOB::pan_left::1::h::SOLO") == ("pan", {"direction": "left"})
    assert custom_action("MJ::Outpaint::50::1::h::SOLO") == ("zoom", {"zoom_ratio": 2.0})
    assert custom_action("MJ::Inpaint::1::h::SOLO") == ("inpaint", {})
    assert custom_action("MJ::CustomZoom::h") == ("zoom", {})
    assert custom_action("MJ::BOOKMARK::h") is None
    assert custom_action("nonsense") is None
