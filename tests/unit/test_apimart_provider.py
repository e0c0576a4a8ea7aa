"""Contract tests for the APIMart adapter: the documented examples, both query shapes, status
mapping, validation of every documented field, request bodies, error mapping and the modal call.
Pure: no network.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from service.domain.status import Status
from service.errors import (
    MalformedCallback,
    ProviderRejected,
    ProviderUnavailable,
    ValidationFailed,
)
from service.providers.apimart import ApimartProvider
from service.providers.base import ModalProvider, Parent
from tests.support.providers import example, response

KEY = "sk-test-key"
TASK_ID = "task_01KV52C0TEJSYZMCG0NCS4YWKK"
GRID = Parent(provider_task_id="task_grid", action="imagine", params={"prompt": "x"})
UPSCALED = Parent(provider_task_id="task_up", action="upscale", params={"index": 1})
PNG = b"\x89PNG\r\n\x1a\n" + bytes(32)
MASK = base64.b64encode(PNG).decode()
URL = "https://cdn.example.com/a.png"


@pytest.fixture
def provider() -> ApimartProvider:
    return ApimartProvider(api_key=KEY)


def test_class_facts(provider: ApimartProvider) -> None:
    typed: ModalProvider = provider
    assert typed.actions == {
        "imagine",
        "upscale",
        "variation",
        "high_variation",
        "low_variation",
        "reroll",
        "zoom",
        "pan",
        "inpaint",
        "video",
        "blend",
        "describe",
        "edits",
    }
    assert not provider.supports_callbacks
    assert not provider.signs_callbacks
    assert provider.poll_interval == 4.0
    assert (provider.name, provider.base_url) == ("apimart", "https://api.apimart.ai")
    sim = ApimartProvider(api_key=KEY, base_url="http://127.0.0.1:9/_sim/", name="sim")
    assert (sim.name, sim.base_url) == ("sim", "http://127.0.0.1:9/_sim")
    with pytest.raises(ValueError, match="API key"):
        ApimartProvider(api_key="")


# --- the documented examples -------------------------------------------------------------------


def test_submit_example(provider: ApimartProvider) -> None:
    submitted = provider.parse_submit(response(200, _example("submit")))
    obs = submitted.observation
    assert submitted.provider_task_id == TASK_ID
    assert (obs.status, obs.source, obs.progress) == (Status.SUBMITTED, "api", 0)
    assert (obs.provider_task_id, obs.dedupe_key) == (TASK_ID, f"submit:{TASK_ID}")
    assert obs.raw == _example("submit")
    assert obs.detail is None


def test_inpaint_modal_example_bare_and_wrapped(provider: ApimartProvider) -> None:
    bare = _example("inpaint-response.modal")
    wrapped = {"code": 200, "data": [{"task_id": "task_03", "status": "modal"}]}
    for body, task_id in ((bare, "task_03_inpaint..."), (wrapped, "task_03")):
        submitted = provider.parse_submit(response(200, body))
        assert submitted.provider_task_id == task_id
        assert (submitted.observation.status, submitted.observation.progress) == (Status.MODAL, 15)
        assert not submitted.observation.modal_call


def test_midjourney_success_example(provider: ApimartProvider) -> None:
    body = _example("midjourney.success")
    obs = provider.parse_query(response(200, body))
    assert (obs.status, obs.progress, obs.source) == (Status.SUCCESS, 100, "poll")
    assert obs.provider_task_id == TASK_ID
    assert obs.result == {
        "images": body["image_urls"],
        "grid_url": "https://cdn.apimart.ai/mj_xxxx.png",
        "videos": [],
        "actions": [
            {"label": "U1", "custom_id": "MJ::JOB::upsample::1::abc123def456"},
            {"label": "V1", "custom_id": "MJ::JOB::variation::1::abc123def456"},
        ],
        "cost": None,
        "prompts": [],  # an imagine's `prompt` is the client's, not a describe's answer
        "expires_at": None,
        "provider_metadata": None,
    }
    assert obs.error is None
    assert obs.raw == body


def test_tasks_completed_example_url_string(provider: ApimartProvider) -> None:
    body = _example("tasks.completed")
    obs = provider.parse_query(response(200, body))
    assert (obs.status, obs.progress) == (Status.SUCCESS, 100)
    assert obs.provider_task_id == "task-unified-1757156493-k9m2xpvw"
    assert obs.result is not None
    assert obs.result["images"] == ["https://example.com/generated-image.png"]
    assert (obs.result["grid_url"], obs.result["videos"]) == (None, [])
    assert obs.result["expires_at"] == "2025-09-07T11:01:33.000Z"  # 1757242893
    assert obs.raw == body


def test_tasks_completed_example_url_list(provider: ApimartProvider) -> None:
    obs = provider.parse_query(response(200, _example("tasks.completed.url-list")))
    assert obs.status is Status.SUCCESS
    assert obs.provider_task_id == TASK_ID
    assert obs.result is not None
    assert obs.result["images"] == ["https://upload.apimart.ai/f/image/example-0.png"]


def test_tasks_shape_several_images_and_videos(provider: ApimartProvider) -> None:
    body = {
        "code": 200,
        "data": {
            "id": "t",
            "status": "completed",
            "progress": 100,
            "result": {
                "images": [
                    {"url": ["https://x/1.png", "https://x/2.png"]},
                    {"url": "https://x/3.png"},
                ],
                "videos": [{"url": ["https://x/v.mp4"], "expires_at": 5}],
            },
        },
    }
    obs = provider.parse_query(response(200, body))
    assert obs.result is not None
    assert obs.result["images"] == ["https://x/1.png", "https://x/2.png", "https://x/3.png"]
    assert obs.result["videos"] == ["https://x/v.mp4"]
    assert obs.result["expires_at"] == "1970-01-01T00:00:05.000Z"  # the earliest


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        ([1757242893000], "2025-09-07T11:01:33.000Z"),  # milliseconds are read as such
        (["1757242893", True, None], None),  # not a number: not guessed at
        ([10**30], None),
    ],
)
def test_expires_at_forms(provider: ApimartProvider, stamps: list[Any], expected: Any) -> None:
    images = [{"url": "https://x/1.png", "expires_at": stamp} for stamp in stamps]
    body = {"code": 200, "data": {"id": "t", "status": "completed", "result": {"images": images}}}
    result = provider.parse_query(response(200, body)).result
    assert result is not None and result["expires_at"] == expected


@pytest.mark.parametrize("key", ["video_urls", "video_url"])
def test_midjourney_shape_videos(provider: ApimartProvider, key: str) -> None:
    urls = ["https://x/1.mp4", "https://x/2.mp4"]
    body = {"id": "t", "status": "SUCCESS", "progress": "100%", key: urls, "image_urls": []}
    obs = provider.parse_query(response(200, body))
    assert obs.result is not None
    assert (obs.result["videos"], obs.result["images"]) == (urls, [])


#: docs.apimart.ai .../midjourney/describe: "The text result is in prompt / description of the
#: query result; image_urls / grid_image_url are not returned. The result is four numbered
#: suggestions, separated by \\n and prefixed with the digit emoji 1️⃣2️⃣3️⃣4️⃣".
DESCRIBE_TEXT = (
    "1️⃣ a serene mountain lake at sunrise --ar 3:2\n2️⃣ mountain landscape with reflections "
    "--v 6.1\n3️⃣ panoramic view of alpine lake --ar 16:9\n4️⃣ dawn light over still water --s 250"
)
DESCRIBE_PROMPTS = [
    "a serene mountain lake at sunrise --ar 3:2",
    "mountain landscape with reflections --v 6.1",
    "panoramic view of alpine lake --ar 16:9",
    "dawn light over still water --s 250",
]


@pytest.mark.parametrize("key", ["prompt", "description"])
def test_describe_documented_answer(provider: ApimartProvider, key: str) -> None:
    body = {
        "id": "task_xxx",
        "status": "SUCCESS",
        "action": "DESCRIBE",
        "mode": "DESCRIBE",
        key: DESCRIBE_TEXT,
    }
    obs = provider.parse_query(response(200, body))
    assert obs.status is Status.SUCCESS
    assert obs.result is not None
    assert obs.result["prompts"] == DESCRIBE_PROMPTS
    assert (obs.result["images"], obs.result["grid_url"]) == ([], None)


@pytest.mark.parametrize(
    ("task", "prompts"),
    [
        # text without the keycap marks is kept whole
        ({"action": "DESCRIBE", "prompt": "1 a lake\n2 a hill"}, ["1 a lake\n2 a hill"]),
        # `description` first, then `prompt`
        ({"action": "DESCRIBE", "description": "1️⃣ a", "prompt": "x"}, ["a"]),
        # the /v1/tasks shape names no action: its description is read, its prompt is not
        ({"description": "1️⃣ a\n2️⃣ b", "prompt": "mine"}, ["a", "b"]),
        ({"result": {"description": "1️⃣ a"}}, ["a"]),
        ({"prompt": "a cat"}, []),
        # another action's prompt and description are not describe's answer
        ({"action": "IMAGINE", "description": "Submit success", "prompt": "a cat"}, []),
    ],
)
def test_describe_text_forms(
    provider: ApimartProvider, task: dict[str, Any], prompts: list[str]
) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": "SUCCESS", **task}))
    assert (obs.result or {}).get("prompts", []) == prompts


# --- status and progress -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("NOT_START", Status.SUBMITTED),
        ("SUBMITTED", Status.SUBMITTED),
        ("IN_PROGRESS", Status.IN_PROGRESS),
        ("MODAL", Status.MODAL),
        ("SUCCESS", Status.SUCCESS),
        ("FAILURE", Status.FAILURE),
        ("CANCEL", Status.CANCEL),
    ],
)
def test_midjourney_status_map(provider: ApimartProvider, raw: str, status: Status) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": raw, "progress": "15%"}))
    assert (obs.status, obs.progress, obs.detail) == (status, 15, None)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("pending", Status.SUBMITTED),
        ("processing", Status.IN_PROGRESS),
        ("completed", Status.SUCCESS),
        ("failed", Status.FAILURE),
        ("cancelled", Status.CANCEL),
    ],
)
def test_tasks_status_map(provider: ApimartProvider, raw: str, status: Status) -> None:
    body = {"code": 200, "data": {"id": "t", "status": raw, "progress": 40}}
    obs = provider.parse_query(response(200, body))
    assert (obs.status, obs.progress, obs.provider_task_id) == (status, 40, "t")


@pytest.mark.parametrize("raw", ["PAUSED", "Success", "done", None, 3])
def test_unknown_status_is_not_guessed(provider: ApimartProvider, raw: Any) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": raw}))
    assert obs.status is None
    assert obs.detail == f"unknown APIMart status {raw!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0%", 0), ("42%", 42), (" 99% ", 99), ("100%", 100), ("150%", 100), (42, 42), (12.7, 12)],
)
def test_progress(provider: ApimartProvider, value: Any, expected: int) -> None:
    body = {"id": "t", "status": "IN_PROGRESS", "progress": value}
    assert provider.parse_query(response(200, body)).progress == expected


@pytest.mark.parametrize("value", [None, True, "lots", "%", [1]])
def test_progress_garbage_is_none(provider: ApimartProvider, value: Any) -> None:
    body = {"id": "t", "status": "IN_PROGRESS", "progress": value}
    assert provider.parse_query(response(200, body)).progress is None


def test_fail_reason_is_the_error(provider: ApimartProvider) -> None:
    body = {"id": "t", "status": "FAILURE", "progress": "100%", "fail_reason": "banned prompt"}
    obs = provider.parse_query(response(200, body))
    assert obs.status is Status.FAILURE
    assert obs.error == {
        "code": "provider_failed",
        "message": "banned prompt",
        "provider_code": None,
    }


def test_tasks_shape_failure_error(provider: ApimartProvider) -> None:
    body = {"code": 200, "data": {"id": "t", "status": "failed", "error": {"message": "nsfw"}}}
    obs = provider.parse_query(response(200, body))
    assert obs.error is not None
    assert obs.error["message"] == "nsfw"
    bare = provider.parse_query(response(200, {"id": "t", "status": "FAILURE"}))
    assert bare.error is not None
    assert bare.error["message"] == "APIMart reported the task failed"


# --- query errors ------------------------------------------------------------------------------


def test_query_request(provider: ApimartProvider) -> None:
    request = provider.build_query("task_1/../x")
    assert (request.method, request.path, request.json) == (
        "GET",
        "/v1/midjourney/task_1%2F..%2Fx",
        None,
    )
    assert request.headers["Authorization"] == f"Bearer {KEY}"


def test_query_403_another_account(provider: ApimartProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_query(response(403, {"code": 403, "msg": "forbidden"}))
    assert caught.value.http_status == 403
    assert "another APIMart account" in caught.value.detail


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, {"code": 3, "msg": "task not found"}), (200, {"code": 3, "msg": "no instance"})],
)
def test_query_not_found(provider: ApimartProvider, status: int, body: Any) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_query(response(status, body))
    assert caught.value.http_status == 404
    assert "3 days" in caught.value.detail


def test_query_rate_limit_and_outages(provider: ApimartProvider) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_query(response(429, {"code": 429, "msg": "slow"}, {"Retry-After": "7"}))
    assert caught.value.retry_after == 7.0
    for status, body in ((500, {"msg": "boom"}), (503, b"<html>"), (200, b"not json"), (200, [])):
        with pytest.raises(ProviderUnavailable):
            provider.parse_query(response(status, body))
    with pytest.raises(ProviderUnavailable, match="unreadable"):
        provider.parse_query(response(200, {"status": "SUCCESS"}))


# --- submit errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "http_status", "code"),
    [
        (400, {"code": 4, "msg": "prompt is required"}, 400, "4"),
        (200, {"code": 4, "msg": "prompt is required"}, 400, "4"),
        (200, {"code": 3, "message": "task not found"}, 404, "3"),
        (404, {"code": 3, "msg": "task not found"}, 404, "3"),
        (401, {"code": 401, "msg": "bad key"}, 401, "401"),
        (401, {"error": {"message": "bad key"}}, 401, "401"),
        (402, {"error": "no credit"}, 402, "402"),
        (200, {"code": "4", "msg": "x"}, 400, "4"),
    ],
)
def test_submit_rejections(
    provider: ApimartProvider, status: int, body: Any, http_status: int, code: str
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(status, body))
    assert (caught.value.http_status, caught.value.provider_code) == (http_status, code)
    assert caught.value.detail in (
        "prompt is required",
        "task not found",
        "bad key",
        "no credit",
        "x",
    )


def test_submit_401_is_a_502(provider: ApimartProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(401, {"code": 401, "msg": "bad key"}))
    assert (caught.value.http_status, caught.value.status) == (401, 502)


def test_submit_unavailable(provider: ApimartProvider) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_submit(response(429, {"msg": "slow"}, {"retry-after": "2.5"}))
    assert caught.value.retry_after == 2.5
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_submit(response(200, {"code": 429, "msg": "slow"}))
    assert caught.value.retry_after is None
    cases: list[tuple[int, Any]] = [
        (502, {"msg": "bad gateway"}),
        (503, b""),
        (200, b"<html>"),
        (200, {"code": 500, "msg": "internal"}),
        (200, {"code": 200, "data": []}),
        (200, {"code": 200, "data": [{"status": "submitted"}]}),
    ]
    for status, body in cases:
        with pytest.raises(ProviderUnavailable):
            provider.parse_submit(response(status, body))


def test_submit_unknown_code_is_refused(provider: ApimartProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(200, {"code": 17, "msg": "odd"}))
    assert (caught.value.provider_code, caught.value.status) == ("17", 502)


def test_submit_odd_status_is_still_an_acceptance(provider: ApimartProvider) -> None:
    body = {"code": 200, "data": [{"status": "queued", "task_id": "t"}]}
    obs = provider.parse_submit(response(200, body)).observation
    assert obs.status is Status.SUBMITTED
    assert obs.detail == "unexpected APIMart status 'queued' on submit"


# --- callbacks ---------------------------------------------------------------------------------


def test_no_callbacks(provider: ApimartProvider) -> None:
    assert provider.verify_callback({}, b"anything")
    with pytest.raises(MalformedCallback, match="no callbacks"):
        provider.parse_callback({}, b"{}")


# --- validation --------------------------------------------------------------------------------


def test_validate_imagine_all_fields(provider: ApimartProvider) -> None:
    params = {
        "prompt": "  a city  ",
        "speed": "FAST",
        "image_urls": [URL],
        "metadata": {"order": 1},
        "aspect_ratio": "16:9",
        "quality": 0.5,
        "style": "raw",
        "version": "8.1",
        "seed": 42,
        "negative_prompt": "blur",
        "stylize": 1000,
        "chaos": 0,
        "weird": 3000,
        "tile": False,
        "niji": "6",
        "iw": 3,
        "cw": 100,
        "sw": 0,
        "cref": URL,
        "sref": ["123", URL],
        "repeat": 40,
        "raw": True,
        "draft": False,
    }
    cleaned = provider.validate("imagine", params, None)
    assert cleaned["prompt"] == "a city"
    assert cleaned["speed"] == "fast"
    assert cleaned["quality"] == "0.5"
    assert cleaned["iw"] == 3.0
    assert cleaned["sref"] == ["123", URL]
    assert provider.validate("imagine", {"prompt": "x", "niji": True}, None)["niji"] is True
    assert provider.validate("imagine", {"prompt": "x", "image_urls": []}, None) == {"prompt": "x"}
    assert provider.validate("imagine", {"prompt": "x", "size": "1:1"}, None)["size"] == "1:1"


IMAGE_1 = "params.image_urls[1]"
BAD: list[tuple[str, dict[str, Any], Parent | None, str]] = [
    ("modal", {}, None, "action"),
    ("remix", {}, None, "action"),
    # imagine
    ("imagine", {}, None, "params.prompt"),
    ("imagine", {"prompt": "  "}, None, "params.prompt"),
    ("imagine", {"prompt": 3}, None, "params.prompt"),
    ("imagine", {"prompt": "x", "colour": "red"}, None, "params.colour"),
    ("imagine", {"prompt": "x", "speed": "slow"}, None, "params.speed"),
    ("imagine", {"prompt": "x", "image_urls": URL}, None, "params.image_urls"),
    ("imagine", {"prompt": "x", "image_urls": ["ftp://x/a.png"]}, None, "params.image_urls[0]"),
    ("imagine", {"prompt": "x", "image_urls": [URL, 5]}, None, "params.image_urls[1]"),
    ("imagine", {"prompt": "x", "metadata": [1]}, None, "params.metadata"),
    ("imagine", {"prompt": "x", "size": "wide"}, None, "params.size"),
    ("imagine", {"prompt": "x", "aspect_ratio": "0:1"}, None, "params.aspect_ratio"),
    ("imagine", {"prompt": "x", "size": "1:1", "aspect_ratio": "1:1"}, None, "params.aspect_ratio"),
    ("imagine", {"prompt": "x", "quality": "3"}, None, "params.quality"),
    ("imagine", {"prompt": "x", "style": ""}, None, "params.style"),
    ("imagine", {"prompt": "x", "version": 7}, None, "params.version"),
    ("imagine", {"prompt": "x", "seed": -1}, None, "params.seed"),
    ("imagine", {"prompt": "x", "seed": "42"}, None, "params.seed"),
    ("imagine", {"prompt": "x", "negative_prompt": 1}, None, "params.negative_prompt"),
    ("imagine", {"prompt": "x", "stylize": 1001}, None, "params.stylize"),
    ("imagine", {"prompt": "x", "stylize": 2.5}, None, "params.stylize"),
    ("imagine", {"prompt": "x", "chaos": 101}, None, "params.chaos"),
    ("imagine", {"prompt": "x", "weird": 3001}, None, "params.weird"),
    ("imagine", {"prompt": "x", "weird": True}, None, "params.weird"),
    ("imagine", {"prompt": "x", "tile": "yes"}, None, "params.tile"),
    ("imagine", {"prompt": "x", "niji": 6}, None, "params.niji"),
    ("imagine", {"prompt": "x", "iw": 3.5}, None, "params.iw"),
    ("imagine", {"prompt": "x", "iw": -0.1}, None, "params.iw"),
    ("imagine", {"prompt": "x", "iw": "1"}, None, "params.iw"),
    ("imagine", {"prompt": "x", "cw": 101}, None, "params.cw"),
    ("imagine", {"prompt": "x", "sw": 1001}, None, "params.sw"),
    ("imagine", {"prompt": "x", "cref": 1}, None, "params.cref"),
    ("imagine", {"prompt": "x", "sref": []}, None, "params.sref"),
    ("imagine", {"prompt": "x", "sref": ["a", 2]}, None, "params.sref[1]"),
    ("imagine", {"prompt": "x", "repeat": 1}, None, "params.repeat"),
    ("imagine", {"prompt": "x", "repeat": 41}, None, "params.repeat"),
    ("imagine", {"prompt": "x", "raw": 1}, None, "params.raw"),
    ("imagine", {"prompt": "x", "draft": None}, None, "params.draft"),
    ("imagine", {"prompt": "x"}, GRID, "parent_id"),
    ("imagine", {"prompt": "x", "task_id": "t"}, None, "params.task_id"),
    # follow-ups
    ("upscale", {"index": 1}, None, "parent_id"),
    ("upscale", {"index": 1, "task_id": ""}, None, "params.task_id"),
    ("upscale", {"index": 1, "task_id": "other"}, GRID, "params.task_id"),
    ("upscale", {}, GRID, "params.index"),
    ("upscale", {"index": 0}, GRID, "params.index"),
    ("upscale", {"index": 5}, GRID, "params.index"),
    ("upscale", {"index": True}, GRID, "params.index"),
    ("upscale", {"index": "2"}, GRID, "params.index"),
    ("variation", {}, GRID, "params.index"),
    ("high_variation", {"speed": "fast"}, GRID, "params.index"),
    ("low_variation", {}, GRID, "params.index"),
    ("upscale", {"index": 1, "custom_id": ""}, GRID, "params.custom_id"),
    ("upscale", {"index": 1, "prompt": "x"}, GRID, "params.prompt"),
    ("reroll", {"speed": "warp"}, GRID, "params.speed"),
    ("reroll", {}, None, "parent_id"),
    ("zoom", {}, UPSCALED, "params.zoom_ratio"),
    ("zoom", {"zoom_ratio": 1.0}, UPSCALED, "params.zoom_ratio"),
    ("zoom", {"zoom_ratio": 2.5}, UPSCALED, "params.zoom_ratio"),
    ("zoom", {"zoom_ratio": True}, UPSCALED, "params.zoom_ratio"),
    ("zoom", {"zoom_ratio": "2"}, UPSCALED, "params.zoom_ratio"),
    ("pan", {}, UPSCALED, "params.direction"),
    ("pan", {"direction": "north"}, UPSCALED, "params.direction"),
    ("pan", {"direction": "up", "zoom_ratio": 2}, UPSCALED, "params.zoom_ratio"),
    ("inpaint", {}, GRID, "parent_id"),
    ("inpaint", {}, None, "parent_id"),
    ("inpaint", {"index": 9}, UPSCALED, "params.index"),
    ("inpaint", {"mask_url": URL}, UPSCALED, "params.mask_url"),
    # video
    ("video", {}, None, "params.image_urls"),
    ("video", {"image_urls": []}, None, "params.image_urls"),
    ("video", {"image_urls": [URL, URL]}, None, "params.image_urls"),
    ("video", {"image_urls": [URL], "video_type": "vid_1.1_i2v_1080"}, None, "params.video_type"),
    ("video", {"image_urls": [URL], "video_type": "hd"}, None, "params.video_type"),
    ("video", {"image_urls": [URL], "batch_size": 3}, None, "params.batch_size"),
    ("video", {"image_urls": [URL], "batch_size": 0}, None, "params.batch_size"),
    ("video", {"image_urls": [URL], "end_url": "file:///x"}, None, "params.end_url"),
    ("video", {"image_urls": [URL], "speed": "fast"}, None, "params.speed"),
    ("video", {"image_urls": [URL]}, GRID, "parent_id"),
    ("video", {"image_urls": [URL], "task_id": "t"}, None, "params.task_id"),
    # blend, describe, edits
    ("blend", {"image_urls": [URL]}, None, "params.image_urls"),
    ("blend", {"image_urls": [URL] * 5}, None, "params.image_urls"),
    ("blend", {"image_urls": [URL, URL], "dimensions": "ROUND"}, None, "params.dimensions"),
    ("blend", {"image_urls": [URL, URL], "prompt": "x"}, None, "params.prompt"),
    ("describe", {}, None, "params.image_urls"),
    ("describe", {"image_urls": [URL, URL]}, None, "params.image_urls"),
    ("edits", {"image_urls": [URL]}, None, "params.prompt"),
    ("edits", {"prompt": "x"}, None, "params.image_urls"),
    ("edits", {"prompt": "x", "image_urls": []}, None, "params.image_urls"),
    # inline images: a known image type whose bytes say so, valid base64, at most 12 MiB
    *(
        ("imagine", {"prompt": "x", "image_urls": [value]}, None, "params.image_urls[0]")
        for value in (
            "data:text/plain;base64,aGk=",
            "data:image/svg+xml;base64,PHN2Zz4=",
            "data:image/png," + MASK,
            "data:image/png;base64,!!!",
            "data:image/png;base64,",
            "data:image/jpeg;base64," + MASK,
        )
    ),
    ("imagine", {"prompt": "x", "image_urls": [URL, "data:image/gif;base64,"]}, None, IMAGE_1),
    ("blend", {"image_urls": [URL, "data:image/webp;base64," + MASK]}, None, IMAGE_1),
    ("describe", {"image_urls": ["data:image/gif;base64," + MASK]}, None, "params.image_urls[0]"),
    # documented values only (docs.apimart.ai .../midjourney/video and .../pan)
    ("video", {"image_urls": [URL], "video_type": "vid_1.1_i2v_extend"}, None, "params.video_type"),
    ("video", {"image_urls": [URL], "motion": "medium"}, None, "params.motion"),
    ("pan", {"direction": "north"}, UPSCALED, "params.direction"),
]


@pytest.mark.parametrize(("action", "params", "parent", "field"), BAD)
def test_validate_errors(
    provider: ApimartProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent | None,
    field: str,
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate(action, params, parent)
    assert caught.value.field == field


JPEG = b"\xff\xd8\xff\xe0" + bytes(16)


def _inline(kind: str, data: bytes) -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (_inline("png", PNG), _inline("png", PNG)),
        (_inline("jpeg", JPEG), None),
        (_inline("jpg", JPEG), _inline("jpeg", JPEG)),
        (_inline("webp", b"RIFF\0\0\0\0WEBPVP8 " + bytes(8)), None),
        (_inline("gif", b"GIF89a" + bytes(8)), None),
        # whitespace inside (a wrapped base64) is dropped, the type's case too
        ("DATA:image/PNG;base64," + MASK[:10] + "\n " + MASK[10:], _inline("png", PNG)),
    ],
)
def test_inline_images(provider: ApimartProvider, given: str, sent: str | None) -> None:
    """ "image_urls: Image URLs or base64" (docs.apimart.ai .../midjourney/imagine)."""
    cleaned = provider.validate("imagine", {"prompt": "x", "image_urls": [URL, given]}, None)
    assert cleaned["image_urls"] == [URL, sent or given]
    request = provider.build_submit("imagine", cleaned, parent=None, callback_url=None)
    assert request.json["image_urls"] == [URL, sent or given]


def test_inline_image_limits_and_messages(provider: ApimartProvider) -> None:
    limit = 12 * 1024 * 1024
    fits = _inline("png", PNG + bytes(limit - len(PNG)))
    assert provider.validate("describe", {"image_urls": [fits]}, None)["image_urls"] == [fits]
    too_big = _inline("png", PNG + bytes(limit - len(PNG) + 1))
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("describe", {"image_urls": [too_big]}, None)
    assert caught.value.field == "params.image_urls[0]"
    # A refusal names the field and the rule, never the bytes.
    secret = _inline("jpeg", PNG + b"SECRET-BYTES")
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("imagine", {"prompt": "x", "image_urls": [secret]}, None)
    assert caught.value.detail == (
        "params.image_urls[0]: is not a JPEG image (its first bytes say so)"
    )


def test_documented_video_types_and_values(provider: ApimartProvider) -> None:
    """The four video_type values, motion and batch_size of docs.apimart.ai .../video."""
    for video_type in ("vid_1.1_i2v_480", "vid_1.1_i2v_720", "vid_1.1_i2v_start_end_480",
                       "vid_1.1_i2v_start_end_720"):  # fmt: skip
        cleaned = provider.validate(
            "video",
            {"image_urls": [URL], "video_type": video_type, "motion": "low", "batch_size": 2},
            None,
        )
        assert cleaned["video_type"] == video_type


def test_inpaint_parent_message(provider: ApimartProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("inpaint", {}, GRID)
    assert caught.value.detail == (
        "parent_id: APIMart inpaints a single upscaled image; upscale first"
    )


def test_follow_ups_by_custom_id_or_external_task(provider: ApimartProvider) -> None:
    button = {"custom_id": "MJ::JOB::upsample::2::abc"}
    assert provider.validate("upscale", button, GRID) == button
    assert provider.validate("zoom", {"custom_id": "MJ::Outpaint::50::1::a"}, UPSCALED)
    assert provider.validate("pan", {"custom_id": "MJ::JOB::pan_up::1::a"}, UPSCALED)
    external = provider.validate("upscale", {"index": 2, "task_id": " task_ext "}, None)
    assert external == {"index": 2, "task_id": "task_ext"}
    same = provider.validate("upscale", {"index": 2, "task_id": "task_grid"}, GRID)
    assert same["index"] == 2
    # An inpaint of a task made outside jobhook: APIMart itself checks it is an upscale.
    assert provider.validate("inpaint", {"task_id": "task_ext"}, None) == {"task_id": "task_ext"}


@pytest.mark.parametrize("ratio", [1.5, 2, 2.0, 1.01])
def test_zoom_ratios(provider: ApimartProvider, ratio: float) -> None:
    assert provider.validate("zoom", {"zoom_ratio": ratio}, UPSCALED)["zoom_ratio"] == ratio


# --- request bodies ----------------------------------------------------------------------------


def test_build_imagine(provider: ApimartProvider) -> None:
    request = provider.build_submit(
        "imagine",
        {"prompt": "a city", "aspect_ratio": "16:9", "speed": "fast", "stylize": 250},
        parent=None,
        callback_url="https://ignored.example/cb",
        idempotency_key="task_1",
    )
    assert (request.method, request.path) == ("POST", "/v1/midjourney/generations/imagine")
    assert request.json == {"prompt": "a city", "size": "16:9", "speed": "fast", "stylize": 250}
    assert request.headers == {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}


@pytest.mark.parametrize(
    ("action", "params", "parent", "path", "body"),
    [
        ("upscale", {"index": 2}, GRID, "upscale", {"task_id": "task_grid", "index": 2}),
        ("variation", {"index": 4}, GRID, "variation", {"task_id": "task_grid", "index": 4}),
        (
            "high_variation",
            {"index": 1, "speed": "fast"},
            GRID,
            "high-variation",
            {"task_id": "task_grid", "index": 1, "speed": "fast"},
        ),
        (
            "low_variation",
            {"index": 3},
            GRID,
            "low-variation",
            {"task_id": "task_grid", "index": 3},
        ),
        ("reroll", {}, GRID, "reroll", {"task_id": "task_grid"}),
        (
            "upscale",
            {"custom_id": "MJ::JOB::upsample::1::a"},
            GRID,
            "upscale",
            {"task_id": "task_grid", "custom_id": "MJ::JOB::upsample::1::a"},
        ),
        (
            "zoom",
            {"zoom_ratio": 1.5, "speed": "fast"},
            UPSCALED,
            "zoom",
            {"task_id": "task_up", "zoom_ratio": 1.5, "speed": "fast"},
        ),
        (
            "pan",
            {"direction": "Left"},
            UPSCALED,
            "pan",
            {"task_id": "task_up", "direction": "left"},
        ),
        ("inpaint", {}, UPSCALED, "inpaint", {"task_id": "task_up"}),
        (
            "inpaint",
            {"task_id": "task_x", "metadata": {"a": 1}},
            None,
            "inpaint",
            {"task_id": "task_x", "metadata": {"a": 1}},
        ),
        (
            "video",
            {
                "prompt": "traffic",
                "image_urls": [URL],
                "video_type": "vid_1.1_i2v_720",
                "batch_size": 4,
                "end_url": URL,
            },
            None,
            "video",
            {
                "prompt": "traffic",
                "image_urls": [URL],
                "video_type": "vid_1.1_i2v_720",
                "batch_size": 4,
                "end_url": URL,
            },
        ),
        (
            "blend",
            {"image_urls": [URL, URL], "aspect_ratio": "3:2"},
            None,
            "blend",
            {"image_urls": [URL, URL], "size": "3:2"},
        ),
        ("describe", {"image_urls": [URL]}, None, "describe", {"image_urls": [URL]}),
        (
            "edits",
            {"prompt": "kitchen", "image_urls": [URL], "version": "8.1"},
            None,
            "edits",
            {"prompt": "kitchen", "image_urls": [URL], "version": "8.1"},
        ),
    ],
)
def test_build_follow_ups_and_others(
    provider: ApimartProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent | None,
    path: str,
    body: dict[str, Any],
) -> None:
    request = provider.build_submit(action, params, parent=parent, callback_url=None)
    assert (request.method, request.path) == ("POST", f"/v1/midjourney/generations/{path}")
    assert request.json == body
    assert request.headers["Authorization"] == f"Bearer {KEY}"


def test_build_refuses_what_validate_refuses(provider: ApimartProvider) -> None:
    with pytest.raises(ValidationFailed):
        provider.build_submit("upscale", {"index": 9}, parent=GRID, callback_url=None)


# --- the modal call ----------------------------------------------------------------------------


def test_validate_modal(provider: ApimartProvider) -> None:
    assert provider.validate_modal({}) == {}
    assert provider.validate_modal({"prompt": " sofa ", "mask_url": URL, "speed": "fast"}) == {
        "prompt": "sofa",
        "mask_url": URL,
        "speed": "fast",
    }
    data_url = "data:image/png;base64," + MASK
    assert provider.validate_modal({"mask_url": data_url}) == {"mask_url": data_url}
    assert provider.validate_modal({"mask": MASK}) == {"mask": MASK}
    assert provider.validate_modal({"mask": data_url[:30] + "\n" + data_url[30:]}) == {"mask": MASK}
    assert provider.validate_modal({"prompt": ""}) == {}


NOT_PNG = base64.b64encode(b"GIF89a" + bytes(10)).decode()
BAD_MODAL: list[tuple[dict[str, Any], str]] = [
    ({"colour": "red"}, "params.colour"),
    ({"task_id": "t"}, "params.task_id"),
    ({"prompt": 5}, "params.prompt"),
    ({"mask_url": "ftp://x/m.png"}, "params.mask_url"),
    ({"mask_url": "not a url"}, "params.mask_url"),
    ({"mask_url": 5}, "params.mask_url"),
    ({"mask_url": "data:image/jpeg;base64," + MASK}, "params.mask_url"),
    ({"mask_url": "data:image/png;base64," + NOT_PNG}, "params.mask_url"),
    ({"mask": ""}, "params.mask"),
    ({"mask": 42}, "params.mask"),
    ({"mask": "not base64!!"}, "params.mask"),
    ({"mask": NOT_PNG}, "params.mask"),
    ({"mask": "data:image/gif;base64," + MASK}, "params.mask"),
    ({"mask": MASK, "mask_url": URL}, "params.mask"),
    ({"speed": "slow"}, "params.speed"),
    ({"metadata": "x"}, "params.metadata"),
]


@pytest.mark.parametrize(("params", "field"), BAD_MODAL)
def test_validate_modal_errors(
    provider: ApimartProvider, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate_modal(params)
    assert caught.value.field == field


def test_mask_size_limit(provider: ApimartProvider) -> None:
    limit = 12 * 1024 * 1024
    just_fits = base64.b64encode(PNG + bytes(limit - len(PNG))).decode()
    assert provider.validate_modal({"mask": just_fits}) == {"mask": just_fits}
    too_big = base64.b64encode(PNG + bytes(limit - len(PNG) + 1)).decode()
    with pytest.raises(ValidationFailed) as caught:
        provider.validate_modal({"mask": too_big})
    assert "12 MiB" in caught.value.detail


def test_build_modal(provider: ApimartProvider) -> None:
    request = provider.build_modal(
        "task_03", {"prompt": "a red sofa", "mask_url": URL, "speed": "fast"}
    )
    assert (request.method, request.path) == ("POST", "/v1/midjourney/generations/modal")
    assert request.json == {
        "task_id": "task_03",
        "prompt": "a red sofa",
        "mask_url": URL,
        "speed": "fast",
    }
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    based = provider.build_modal("task_03", {"mask": MASK})
    assert based.json == {"task_id": "task_03", "mask_url": "data:image/png;base64," + MASK}
    outpaint = provider.build_modal("task_03", {})
    assert outpaint.json == {"task_id": "task_03"}


def test_parse_modal(provider: ApimartProvider) -> None:
    body = {"code": 200, "data": [{"status": "submitted", "task_id": "task_03"}]}
    obs = provider.parse_modal(response(200, body))
    assert (obs.status, obs.source, obs.modal_call) == (Status.SUBMITTED, "api", True)
    assert (obs.provider_task_id, obs.progress) == ("task_03", None)
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_modal(response(400, {"code": 4, "msg": "task is SUCCESS, not MODAL"}))
    assert (caught.value.http_status, caught.value.provider_code) == (400, "4")
    with pytest.raises(ProviderUnavailable):
        provider.parse_modal(response(503, b"down"))
    with pytest.raises(ProviderUnavailable, match="no task_id"):
        provider.parse_modal(response(200, {"code": 200, "data": []}))


def _example(name: str) -> Any:
    return example("apimart", name)


# --- seed 000's modal call, and the two ways to read a task ------------------------------------

#: The task seed 000's modal request names; its example answer names TASK_ID instead.
MODAL_TASK_ID = "task_01KQW1N9T6E3AHW6QZFDEK8M5C"


def test_seed_000_modal_example_answers_with_another_task_id(provider: ApimartProvider) -> None:
    request = provider.build_modal(
        MODAL_TASK_ID,
        {
            "prompt": "replace the selected area with a red leather sofa",
            "mask_url": "https://example.com/mask.png",
            "speed": "fast",
        },
    )
    assert request.json["task_id"] == MODAL_TASK_ID
    # Seed 000 prints this very body as the modal call's answer (the submit example's bytes).
    obs = provider.parse_modal(response(200, _example("submit")))
    assert (obs.status, obs.modal_call, obs.provider_task_id) == (Status.SUBMITTED, True, TASK_ID)
    assert obs.provider_task_id != MODAL_TASK_ID  # the domain decides what that means


def test_query_shapes_follow_the_docs(provider: ApimartProvider) -> None:
    """Seed 002 reads tasks at /v1/midjourney/{id}; seed 000 polls a task after its modal call
    at /v1/tasks/{id}. The other shape comes second, for when the first answers 404."""
    first, second = provider.query_requests(TASK_ID, after_modal=False)
    assert (first.method, first.path, second.path) == (
        "GET",
        f"/v1/midjourney/{TASK_ID}",
        f"/v1/tasks/{TASK_ID}",
    )
    assert provider.build_query(TASK_ID).path == first.path
    after, fallback = provider.query_requests(TASK_ID, after_modal=True)
    assert (after.path, fallback.path) == (f"/v1/tasks/{TASK_ID}", f"/v1/midjourney/{TASK_ID}")
    assert after.headers["Authorization"] == f"Bearer {KEY}"
    # Each shape's documented example reads as the same finished task.
    unified = provider.parse_query(response(200, _example("tasks.completed.url-list")))
    midjourney = provider.parse_query(response(200, _example("midjourney.success")))
    for obs in (unified, midjourney):
        assert (obs.status, obs.progress, obs.provider_task_id) == (Status.SUCCESS, 100, TASK_ID)
        assert obs.result is not None and obs.result["images"]
    quoted = provider.query_requests("a/../b", after_modal=True)
    assert [r.path for r in quoted] == ["/v1/tasks/a%2F..%2Fb", "/v1/midjourney/a%2F..%2Fb"]


def test_query_shapes_remember_which_answers(provider: ApimartProvider) -> None:
    tasks, midjourney = provider.query_requests(TASK_ID, after_modal=True)
    provider.query_answered(tasks, found=False)  # /v1/tasks answered 404 ...
    provider.query_answered(midjourney, found=True)  # ... and /v1/midjourney did
    assert [r.path for r in provider.query_requests(TASK_ID, after_modal=True)] == [
        midjourney.path,
        tasks.path,
    ]
    assert provider.query_requests(TASK_ID, after_modal=False)[0].path == midjourney.path
    provider.query_answered(tasks, found=True)  # it answers again: the docs' order is back
    assert provider.query_requests(TASK_ID, after_modal=True)[0].path == tasks.path
    # /v1/midjourney gone: every task is read at /v1/tasks first, build_query too.
    provider.query_answered(midjourney, found=False)
    assert provider.build_query(TASK_ID).path == tasks.path
    # Both answered 404 (a task lost for good): no shape is to blame, the docs' order holds.
    provider.query_answered(tasks, found=False)
    assert provider.build_query(TASK_ID).path == midjourney.path
    assert ApimartProvider(api_key=KEY).build_query(TASK_ID).path == midjourney.path
