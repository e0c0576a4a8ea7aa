"""Contract tests for the Vtrix adapter: the documented examples, status and progress mapping,
every error shape and code form, validation, request bodies, the undocumented submit answer and
callback body. Pure: no network.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from service.domain.status import Status
from service.errors import (
    MalformedCallback,
    ProviderRejected,
    ProviderUnavailable,
    ValidationFailed,
)
from service.providers.base import Parent, Provider
from service.providers.vtrix import CALLBACK_HINT, VtrixProvider, normalize_code
from tests.support.providers import EXAMPLES, example, response

KEY = "vtx_test_key"
PARENT = Parent(provider_task_id="mj-parent-1", action="imagine", params={"prompt": "x"})
MASK_URL = "https://cdn.example.com/mask.png"
AREA = {"width": 1024, "height": 1024, "points": [10, 10, 500, 10, 500, 500]}
HOOK = "https://jobhook.example/v1/callbacks/vtrix/tok"


@pytest.fixture
def provider() -> VtrixProvider:
    return VtrixProvider(api_key=KEY)


def test_class_facts(provider: VtrixProvider) -> None:
    typed: Provider = provider
    assert typed.actions == {"inpaint", "edits", "remix", "uploadpaint"}
    assert provider.supports_callbacks
    assert not provider.signs_callbacks
    assert provider.poll_interval == 5.0
    assert (provider.name, provider.base_url) == ("vtrix", "https://cloud.vtrix.ai")
    other = VtrixProvider(api_key=KEY, base_url="http://127.0.0.1:9/_sim/", name="vtrix-sim")
    assert (other.name, other.base_url) == ("vtrix-sim", "http://127.0.0.1:9/_sim")
    with pytest.raises(ValueError, match="API key"):
        VtrixProvider(api_key="")


# --- the documented examples -------------------------------------------------------------------


def test_every_vtrix_example_parses(provider: VtrixProvider) -> None:
    names = sorted(path.name for path in EXAMPLES.glob("vtrix.*.json"))
    assert names == [
        "vtrix.task.completed.json",
        "vtrix.task.failed.json",
        "vtrix.task.in_progress.json",
    ]
    for name in names:
        obs = provider.parse_query(response(200, (EXAMPLES / name).read_bytes()))
        assert obs.status is not None, name
        assert (obs.source, obs.provider_task_id) == ("poll", "task-1")


def test_task_in_progress_example(provider: VtrixProvider) -> None:
    body = _example("task.in_progress")
    obs = provider.parse_query(response(200, body))
    assert (obs.status, obs.progress) == (Status.IN_PROGRESS, 40)
    assert (obs.result, obs.error, obs.detail) == (None, None, None)
    assert obs.raw == body


def test_task_completed_example(provider: VtrixProvider) -> None:
    obs = provider.parse_query(response(200, _example("task.completed")))
    assert (obs.status, obs.progress) == (Status.SUCCESS, 100)
    assert obs.result == {
        "images": ["https://cdn.example.com/out-0.png"],
        "grid_url": None,
        "videos": [],
        "actions": [],
        "cost": {"usd": "0.05", "discount": 0},  # Vtrix's usage
        "prompts": [],
        "expires_at": None,
        "provider_metadata": None,  # the example's `metadata` is empty
    }
    assert obs.error is None


def test_metadata_reaches_the_result(provider: VtrixProvider) -> None:
    body = {**_example("task.completed"), "metadata": {"seed": 42, "engine": "mj-7"}}
    obs = provider.parse_query(response(200, body))
    assert obs.result is not None
    assert obs.result["provider_metadata"] == {"seed": 42, "engine": "mj-7"}
    assert obs.result["images"] == ["https://cdn.example.com/out-0.png"]
    running = provider.parse_query(
        response(200, {**_example("task.in_progress"), "metadata": {"queue": "fast"}})
    )
    assert running.result is not None
    assert (running.result["provider_metadata"], running.result["images"]) == (
        {"queue": "fast"},
        [],
    )
    huge = {**_example("task.completed"), "metadata": {"blob": "x" * 20_000}}
    kept = provider.parse_query(response(200, huge)).result
    assert kept is not None and kept["provider_metadata"] is not None
    assert list(kept["provider_metadata"]) == ["omitted"]


def test_task_failed_example(provider: VtrixProvider) -> None:
    obs = provider.parse_query(response(200, _example("task.failed")))
    assert obs.status is Status.FAILURE
    assert obs.error == {
        "code": "provider_failed",
        "message": "Generation failed",
        "provider_code": "004006098",
    }
    assert obs.result is None


# --- status, progress and results --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("pending", Status.SUBMITTED),
        ("processing", Status.IN_PROGRESS),
        ("in_progress", Status.IN_PROGRESS),
        ("completed", Status.SUCCESS),
        ("failed", Status.FAILURE),
        ("COMPLETED", Status.SUCCESS),
    ],
)
def test_status_map(provider: VtrixProvider, raw: str, status: Status) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": raw}))
    assert obs.status is status
    assert obs.detail is None


@pytest.mark.parametrize("raw", ["paused", "cancelled", "", None, 3])
def test_unknown_status_is_not_guessed(provider: VtrixProvider, raw: Any) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": raw}))
    assert obs.status is None
    assert obs.detail == f"unknown Vtrix status {raw!r}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (0.0, 0),
        (0.004, 0),
        (0.25, 25),
        (0.4, 40),
        (0.999, 100),
        (1, 100),
        (1.0, 100),
        (45, 45),
        (99.6, 100),
        (150, 100),
        (-0.2, 0),
        ("0.5", 50),
        ("40%", 40),
    ],
)
def test_progress_fraction_to_percent(provider: VtrixProvider, value: Any, expected: int) -> None:
    body = {"id": "t", "status": "in_progress", "progress": value}
    assert provider.parse_query(response(200, body)).progress == expected


@pytest.mark.parametrize("value", [None, True, "lots", [0.5], float("nan"), float("inf")])
def test_progress_garbage_is_none(provider: VtrixProvider, value: Any) -> None:
    body = {"id": "t", "status": "in_progress", "progress": value}
    if isinstance(value, float):
        raw = json.dumps(body).encode()  # NaN / Infinity: Python's JSON reads them back
        assert provider.parse_query(response(200, raw)).progress is None
    else:
        assert provider.parse_query(response(200, body)).progress is None


def test_result_images_videos_and_cost(provider: VtrixProvider) -> None:
    body = {
        "id": "t",
        "status": "completed",
        "output": [
            {"content": [{"type": "image", "url": "https://x/1.png"}]},
            {
                "content": [
                    {"type": "image", "url": "https://x/2.png"},
                    {"type": "video", "url": "https://x/v.mp4"},
                    {"type": "text", "url": "https://x/t.txt"},
                    {"type": "image"},
                    "junk",
                ]
            },
            "junk",
            {"content": "junk"},
        ],
        "usage": {"cost": 0.1, "discount": 0.02},
    }
    result = provider.parse_query(response(200, body)).result
    assert result is not None
    assert result["images"] == ["https://x/1.png", "https://x/2.png"]
    assert result["videos"] == ["https://x/v.mp4"]
    assert (result["grid_url"], result["actions"]) == (None, [])
    assert result["cost"] == {"usd": "0.1", "discount": 0.02}


def test_usage_only_and_output_only(provider: VtrixProvider) -> None:
    usage_only = provider.parse_query(
        response(200, {"id": "t", "status": "completed", "usage": {"cost": "0.05"}})
    ).result
    assert usage_only is not None
    assert (usage_only["images"], usage_only["cost"]) == ([], {"usd": "0.05", "discount": None})
    output_only = provider.parse_query(
        response(200, {"id": "t", "status": "completed", "output": []})
    )
    assert output_only.result is not None
    assert output_only.result["cost"] is None


@pytest.mark.parametrize(
    ("error", "message", "code"),
    [
        ({"code": 4006098, "error_message": "Generation failed"}, "Generation failed", "004006098"),
        ({"code": "004006098", "message": "Generation failed"}, "Generation failed", "004006098"),
        ({"code": 4006098, "message": "nsfw"}, "Generation failed: nsfw", "004006098"),
        ({"code": 5001, "message": "GPU on fire"}, "GPU on fire", "5001"),
        ("content policy", "content policy", None),
        (None, "Vtrix reported the task failed", None),
        ({"code": 4006099}, "Service unavailable", "004006099"),
    ],
)
def test_failure_error_shapes(
    provider: VtrixProvider, error: Any, message: str, code: str | None
) -> None:
    obs = provider.parse_query(response(200, {"id": "t", "status": "failed", "error": error}))
    assert obs.status is Status.FAILURE
    assert obs.error == {"code": "provider_failed", "message": message, "provider_code": code}


def test_query_body_wrapped_in_data(provider: VtrixProvider) -> None:
    for body in (
        {"data": _example("task.in_progress")},
        {"code": 200, "message": "ok", "data": _example("task.in_progress")},
    ):
        obs = provider.parse_query(response(200, body))
        assert (obs.status, obs.progress, obs.provider_task_id) == (
            Status.IN_PROGRESS,
            40,
            "task-1",
        )


# --- error codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4006003, "004006003"),
        ("004006003", "004006003"),
        ("4006099", "004006099"),
        (4006098, "004006098"),
        (401, "401"),
        ("E42", "E42"),
        (None, None),
        (True, None),
        ("", None),
    ],
)
def test_normalize_code(value: Any, expected: str | None) -> None:
    assert normalize_code(value) == expected


ERROR_SHAPES = [
    {"error": {"code": 4006003, "error_message": "Invalid image number"}},
    {"error": {"code": "004006003", "message": "Invalid image number"}},
    {"code": 4006003, "message": "Invalid image number"},
    {"code": "004006003", "error_message": "invalid image number"},
]


@pytest.mark.parametrize("body", ERROR_SHAPES)
def test_submit_400_every_error_shape(provider: VtrixProvider, body: dict[str, Any]) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(400, body))
    error = caught.value
    assert (error.http_status, error.status, error.provider_code) == (400, 400, "004006003")
    assert error.detail == "Invalid image number"
    assert error.field == "params.index"


def test_submit_string_error(provider: VtrixProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(422, {"error": "model not available"}))
    assert (caught.value.http_status, caught.value.provider_code) == (422, "422")
    assert caught.value.detail == "model not available"


@pytest.mark.parametrize(
    ("code", "message", "field"),
    [
        (4006001, "Task ID missing", "parent_id"),
        (4006002, "Image number missing", "params.index"),
        (4006004, "Invalid remix prompt length", "params.prompt"),
        (4006005, "Mask parameters missing", None),
        (4006006, "Invalid mask parameters", None),
        (4006007, "Invalid callback URL", None),
        (4006098, "Generation failed", None),
    ],
)
def test_submit_code_mapping(
    provider: VtrixProvider, code: int, message: str, field: str | None
) -> None:
    for printed in (code, f"{code:09d}"):
        body = {"error": {"code": printed, "error_message": "x"}}
        with pytest.raises(ProviderRejected) as caught:
            provider.parse_submit(response(400, body))
        assert caught.value.provider_code == f"{code:09d}"
        assert caught.value.detail == f"{message}: x"
        assert caught.value.field == field


def test_submit_error_in_a_2xx_body(provider: VtrixProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(
            response(200, {"code": 4006005, "message": "Mask parameters missing"})
        )
    assert (caught.value.http_status, caught.value.provider_code) == (400, "004006005")
    with pytest.raises(ProviderRejected) as http_like:
        provider.parse_submit(response(200, {"error": {"code": 403, "message": "no balance"}}))
    assert http_like.value.http_status == 403
    with pytest.raises(ProviderUnavailable):
        provider.parse_submit(response(200, {"code": 4006099, "message": "Service unavailable"}))


def test_submit_401_403(provider: VtrixProvider) -> None:
    body = {"error": {"code": 401, "error_message": "Invalid API key"}}
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(401, body))
    error = caught.value
    assert (error.http_status, error.status, error.detail) == (
        401,
        502,
        "Vtrix rejected the API key",
    )
    assert error.provider_code == "401"
    with pytest.raises(ProviderRejected) as forbidden:
        provider.parse_submit(response(403, {"error": "Insufficient balance"}))
    assert forbidden.value.http_status == 403
    assert "balance or no permission" in forbidden.value.detail
    assert "Insufficient balance" in forbidden.value.detail
    with pytest.raises(ProviderRejected) as bare:
        provider.parse_submit(response(401, b""))
    assert bare.value.http_status == 401


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("1.5", 1.5), ("soon", None)])
def test_submit_429(provider: VtrixProvider, header: str, seconds: float | None) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_submit(
            response(429, {"error": "Too many requests"}, {"Retry-After": header})
        )
    assert caught.value.retry_after == seconds
    assert "rate limit" in caught.value.detail


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": {"code": 500, "error_message": "Internal"}}),
        (503, b"<html>down</html>"),
        (400, {"error": {"code": 4006099, "error_message": "Service unavailable"}}),
        (400, {"code": "004006099", "message": "Service unavailable"}),
        (400, b"<html>bad gateway page</html>"),
        (404, b"<html>no route</html>"),
        (302, b""),
        (200, b"not json"),
        (200, [1, 2]),
        (200, {"status": "pending"}),
        (200, {"code": 200, "data": {"status": "pending"}}),
        (200, {"code": 200, "data": None}),
        (200, {}),
    ],
)
def test_submit_unavailable(provider: VtrixProvider, status: int, body: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        provider.parse_submit(response(status, body))


# --- the submit answer (undocumented) ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"id": "t-1", "status": "pending", "model": "midjourney_inpaint"},
        {"data": {"id": "t-1", "status": "pending"}},
        {"code": 200, "data": {"id": "t-1", "status": "pending"}},
        {"code": 0, "message": "success", "data": {"task_id": "t-1"}},
        {"data": [{"taskId": "t-1"}]},
        {"task_id": "t-1"},
        {"taskId": " t-1 "},
    ],
)
def test_submit_answer_forms(provider: VtrixProvider, body: dict[str, Any]) -> None:
    submitted = provider.parse_submit(response(200, body))
    obs = submitted.observation
    assert submitted.provider_task_id == "t-1"
    assert (obs.status, obs.source, obs.progress, obs.provider_task_id) == (
        Status.SUBMITTED,
        "api",
        0,
        "t-1",
    )
    assert obs.dedupe_key == "submit:t-1"
    assert obs.detail is None
    assert obs.raw == body


def test_submit_numeric_id(provider: VtrixProvider) -> None:
    assert provider.parse_submit(response(200, {"id": 123})).provider_task_id == "123"


@pytest.mark.parametrize(
    ("raw", "status", "noted"),
    [
        ("processing", Status.IN_PROGRESS, False),
        ("in_progress", Status.IN_PROGRESS, False),
        ("pending", Status.SUBMITTED, False),
        ("completed", Status.SUBMITTED, True),
        ("weird", Status.SUBMITTED, True),
    ],
)
def test_submit_status(provider: VtrixProvider, raw: str, status: Status, noted: bool) -> None:
    obs = provider.parse_submit(response(201, {"id": "t", "status": raw})).observation
    assert obs.status is status
    assert (obs.detail is not None) == noted


# --- validation --------------------------------------------------------------------------------


def test_validate_cleans(provider: VtrixProvider) -> None:
    cleaned = provider.validate(
        "inpaint", {"index": 2, "prompt": "  a hat  ", "mask_url": f" {MASK_URL} "}, PARENT
    )
    assert cleaned == {"index": 2, "prompt": "a hat", "mask_url": MASK_URL}
    assert provider.validate("inpaint", cleaned, PARENT) == cleaned
    areas = provider.validate(
        "uploadpaint", {"index": 4, "mask_areas": [AREA], "job_id": "ext-1"}, None
    )
    assert areas == {"job_id": "ext-1", "index": 4, "mask_areas": [AREA]}
    assert provider.validate("remix", {"index": 1, "prompt": "x" * 8192}, PARENT)["prompt"] == (
        "x" * 8192
    )
    assert provider.validate("edits", {"index": 3}, PARENT) == {"index": 3}
    # remixPrompt is optional (seed 003 does not require it), 1..8192 characters when given
    inpaint = provider.validate("inpaint", {"index": 1, "mask_url": MASK_URL}, PARENT)
    assert inpaint == {"index": 1, "mask_url": MASK_URL}
    assert provider.validate("remix", {"index": 1}, PARENT) == {"index": 1}
    assert provider.validate("remix", {"index": 1, "prompt": "   "}, PARENT) == {"index": 1}
    assert provider.validate("edits", {"index": 3, "prompt": "  "}, PARENT) == {"index": 3}
    same = provider.validate("remix", {"index": 1, "prompt": "p", "job_id": "mj-parent-1"}, PARENT)
    assert same["job_id"] == "mj-parent-1"


def area(**changes: Any) -> dict[str, Any]:
    return {**AREA, **changes}


BAD_INPUTS: list[tuple[str, dict[str, Any], Parent | None, str]] = [
    ("imagine", {"prompt": "x"}, None, "action"),
    ("upscale", {"index": 1}, PARENT, "action"),
    ("inpaint", {"index": 1, "prompt": "x", "mask_url": MASK_URL}, None, "parent_id"),
    ("remix", {"index": 1, "prompt": "x", "job_id": 42}, None, "params.job_id"),
    ("remix", {"index": 1, "prompt": "x", "job_id": "  "}, None, "params.job_id"),
    ("remix", {"index": 1, "prompt": "x", "job_id": "other"}, PARENT, "params.job_id"),
    ("remix", {"prompt": "x"}, PARENT, "params.index"),
    ("remix", {"index": 0, "prompt": "x"}, PARENT, "params.index"),
    ("remix", {"index": 5, "prompt": "x"}, PARENT, "params.index"),
    ("remix", {"index": True, "prompt": "x"}, PARENT, "params.index"),
    ("remix", {"index": "2", "prompt": "x"}, PARENT, "params.index"),
    ("remix", {"index": 1, "prompt": 7}, PARENT, "params.prompt"),
    ("remix", {"index": 1, "prompt": "x" * 8193}, PARENT, "params.prompt"),
    ("inpaint", {"index": 1, "prompt": "x" * 8193, "mask_url": MASK_URL}, PARENT, "params.prompt"),
    ("edits", {"index": 1, "prompt": "x" * 8193}, PARENT, "params.prompt"),
    ("remix", {"index": 1, "prompt": "x", "mask_url": MASK_URL}, PARENT, "params.mask_url"),
    ("remix", {"index": 1, "prompt": "x", "image_urls": [MASK_URL]}, PARENT, "params.image_urls"),
    ("edits", {"index": 1, "image_urls": [MASK_URL]}, PARENT, "params.image_urls"),
    ("edits", {"index": 1, "speed": "fast"}, PARENT, "params.speed"),
    ("inpaint", {"index": 1, "prompt": "x"}, PARENT, "params.mask_url"),
    ("uploadpaint", {"index": 1}, PARENT, "params.mask_url"),
    ("inpaint", {"index": 1, "prompt": "x", "mask": "iVBORw0KGgo="}, PARENT, "params.mask"),
    (
        "inpaint",
        {"index": 1, "prompt": "x", "mask_url": MASK_URL, "mask_areas": [AREA]},
        PARENT,
        "params.mask_url",
    ),
    ("edits", {"index": 1, "mask_url": "ftp://x/m.png"}, PARENT, "params.mask_url"),
    ("edits", {"index": 1, "mask_url": "https://"}, PARENT, "params.mask_url"),
    ("edits", {"index": 1, "mask_url": "https://a b/m.png"}, PARENT, "params.mask_url"),
    ("edits", {"index": 1, "mask_url": 5}, PARENT, "params.mask_url"),
    ("edits", {"index": 1, "mask_areas": []}, PARENT, "params.mask_areas"),
    ("edits", {"index": 1, "mask_areas": AREA}, PARENT, "params.mask_areas"),
    ("edits", {"index": 1, "mask_areas": ["x"]}, PARENT, "params.mask_areas[0]"),
    (
        "edits",
        {"index": 1, "mask_areas": [AREA, area(width=499)]},
        PARENT,
        "params.mask_areas[1].width",
    ),
    ("edits", {"index": 1, "mask_areas": [area(width=4097)]}, PARENT, "params.mask_areas[0].width"),
    (
        "edits",
        {"index": 1, "mask_areas": [area(width=600.0)]},
        PARENT,
        "params.mask_areas[0].width",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(height=True)]},
        PARENT,
        "params.mask_areas[0].height",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(height=None)]},
        PARENT,
        "params.mask_areas[0].height",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(points=[1, 2, 3, 4, 5])]},
        PARENT,
        "params.mask_areas[0].points",
    ),
    # x, y pairs: seven numbers are three points and a half
    (
        "edits",
        {"index": 1, "mask_areas": [area(points=[1, 2, 3, 4, 5, 6, 7])]},
        PARENT,
        "params.mask_areas[0].points",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(points=[1, 2, 3, 4, 5, "6"])]},
        PARENT,
        "params.mask_areas[0].points",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(points=[1, 2, 3, 4, 5, True])]},
        PARENT,
        "params.mask_areas[0].points",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(points=None)]},
        PARENT,
        "params.mask_areas[0].points",
    ),
    (
        "edits",
        {"index": 1, "mask_areas": [area(colour="red")]},
        PARENT,
        "params.mask_areas[0].colour",
    ),
]


@pytest.mark.parametrize(("action", "params", "parent", "field"), BAD_INPUTS)
def test_validate_errors(
    provider: VtrixProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent | None,
    field: str,
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate(action, params, parent)
    assert caught.value.field == field


def test_base64_mask_message(provider: VtrixProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("inpaint", {"index": 1, "prompt": "x", "mask": "AAAA"}, PARENT)
    assert caught.value.detail == "params.mask: Vtrix takes mask_url or mask_areas"


def test_area_points_may_be_floats(provider: VtrixProvider) -> None:
    points = [0.5, 1.5, 700, 2, 700.25, 800]
    cleaned = provider.validate("edits", {"index": 1, "mask_areas": [area(points=points)]}, PARENT)
    assert cleaned["mask_areas"] == [{"width": 1024, "height": 1024, "points": points}]


# --- request bodies ----------------------------------------------------------------------------


def test_build_inpaint_with_mask_url(provider: VtrixProvider) -> None:
    request = provider.build_submit(
        "inpaint",
        {"index": 1, "prompt": "a red hat", "mask_url": MASK_URL},
        parent=PARENT,
        callback_url=HOOK,
        idempotency_key="idem-1",
    )
    assert (request.method, request.path) == ("POST", "/model/v1/generation")
    assert request.json == {
        "model": "midjourney_inpaint",
        "jobId": "mj-parent-1",
        "imageNo": 0,
        "mask": {"url": MASK_URL},
        "remixPrompt": "a red hat",
        "callback": HOOK,
    }
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert "Idempotency-Key" not in request.headers


@pytest.mark.parametrize(
    ("action", "params", "expected"),
    [
        (
            "uploadpaint",
            {"index": 4, "mask_areas": [AREA], "job_id": "ext-9"},
            {
                "model": "midjourney_uploadpaint",
                "jobId": "ext-9",
                "imageNo": 3,
                "mask": {"areas": [AREA]},
            },
        ),
        (
            "remix",
            {"index": 2, "prompt": "night", "job_id": "ext-9"},
            {"model": "midjourney_remix", "jobId": "ext-9", "imageNo": 1, "remixPrompt": "night"},
        ),
        (
            "edits",
            {"index": 3, "job_id": "ext-9"},
            {"model": "midjourney_edit", "jobId": "ext-9", "imageNo": 2},
        ),
    ],
)
def test_build_siblings_without_callback(
    provider: VtrixProvider, action: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = provider.build_submit(action, params, parent=None, callback_url=None)
    assert request.json == expected


@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_image_no_is_index_minus_one(provider: VtrixProvider, index: int) -> None:
    params = {"index": index, "prompt": "p"}
    request = provider.build_submit("remix", params, parent=PARENT, callback_url=None)
    assert request.json["imageNo"] == index - 1


def test_build_submit_validates(provider: VtrixProvider) -> None:
    with pytest.raises(ValidationFailed):
        provider.build_submit("inpaint", {"index": 9}, parent=PARENT, callback_url=None)


def test_build_query(provider: VtrixProvider) -> None:
    request = provider.build_query("task-1")
    assert (request.method, request.path, request.json) == (
        "GET",
        "/model/v1/generation/task/task-1",
        None,
    )
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert provider.build_query("../x?y").path == "/model/v1/generation/task/..%2Fx%3Fy"


# --- query errors ------------------------------------------------------------------------------


def test_query_errors(provider: VtrixProvider) -> None:
    with pytest.raises(ProviderRejected) as missing:
        provider.parse_query(
            response(404, {"error": {"code": 404, "error_message": "Task not found"}})
        )
    assert (missing.value.http_status, missing.value.detail) == (404, "Task not found")
    with pytest.raises(ProviderRejected) as bare:
        provider.parse_query(response(404, b"Not Found"))
    assert (bare.value.http_status, bare.value.provider_code) == (404, "404")
    with pytest.raises(ProviderRejected) as forbidden:
        provider.parse_query(response(403, {"error": "not your task"}))
    assert forbidden.value.http_status == 403
    for status in (429, 500, 502, 503):
        with pytest.raises(ProviderUnavailable) as caught:
            provider.parse_query(response(status, {"error": "x"}, {"Retry-After": "3"}))
        assert caught.value.retry_after == 3.0
    # A bad key is ours to fix, not the task's fault: the poller backs off instead of ending it.
    with pytest.raises(ProviderUnavailable, match="API key"):
        provider.parse_query(response(401, {"error": {"code": 401, "error_message": "bad"}}))
    for garbage in (b"garbage", b"[]", b"{}", json.dumps({"data": {"model": "x"}}).encode()):
        with pytest.raises(ProviderUnavailable):
            provider.parse_query(response(200, garbage))
    with pytest.raises(ProviderRejected) as coded:
        provider.parse_query(response(200, {"code": 4006001, "message": "Task ID missing"}))
    assert coded.value.provider_code == "004006001"


# --- callbacks (undocumented: a hint) ----------------------------------------------------------


def test_verify_callback_always_true(provider: VtrixProvider) -> None:
    assert provider.verify_callback({}, b"")
    assert provider.verify_callback({"X-Anything": "x"}, b"{}")


@pytest.mark.parametrize(
    ("body", "task_id", "status"),
    [
        ({"id": "t-1", "status": "completed"}, "t-1", Status.SUCCESS),
        ({"task_id": "t-1", "status": "in_progress"}, "t-1", Status.IN_PROGRESS),
        ({"taskId": "t-1"}, "t-1", None),
        ({"data": {"id": "t-1", "status": "failed"}}, "t-1", Status.FAILURE),
        ({"event": "done", "data": {"taskId": "t-1"}}, "t-1", None),
        ({"id": "t-1", "status": "exploded"}, "t-1", None),
        ({"hello": "world"}, None, None),
        ({}, None, None),
    ],
)
def test_parse_callback_extracts_the_id(
    provider: VtrixProvider, body: dict[str, Any], task_id: str | None, status: Status | None
) -> None:
    raw = json.dumps(body).encode()
    [obs] = provider.parse_callback({}, raw)
    assert (obs.status, obs.source, obs.provider_task_id) == (status, "callback", task_id)
    assert obs.detail == CALLBACK_HINT
    assert obs.raw == body
    assert obs.dedupe_key == "cb:" + hashlib.sha256(raw).hexdigest()[:32]


def test_parse_callback_of_a_fetched_task(provider: VtrixProvider) -> None:
    [obs] = provider.parse_callback({}, (EXAMPLES / "vtrix.task.completed.json").read_bytes())
    assert (obs.status, obs.provider_task_id) == (Status.SUCCESS, "task-1")


@pytest.mark.parametrize("body", [b"", b"   ", b"not json", b"[1, 2]", b'"id"', b"null", b"\xff"])
def test_malformed_callback(provider: VtrixProvider, body: bytes) -> None:
    with pytest.raises(MalformedCallback):
        provider.parse_callback({}, body)


def _example(name: str) -> Any:
    return example("vtrix", name)
