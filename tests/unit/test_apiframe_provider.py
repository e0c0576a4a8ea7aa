"""Contract tests for the Apiframe adapter: the documented examples, status mapping, signatures,
validation, request bodies and error mapping. Pure: no network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from starlette.datastructures import Headers

from service.config import Settings
from service.domain.models import Observation
from service.domain.status import Status
from service.errors import (
    MalformedCallback,
    ProviderRejected,
    ProviderUnavailable,
    ValidationFailed,
)
from service.providers import build_providers, webhooks_off
from service.providers.apiframe import ApiframeProvider, sign_body
from service.providers.base import Parent, Provider
from tests.support.providers import example_bytes, response

KEY = "afk_test_key"
JOB_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
#: Apiframe job ids are uuids ("parentJobId string (uuid)", seed 004).
PARENT_JOB = "0b8f5a52-6a3e-4c1e-9d7a-2f1c3b4a5d6e"
EXTERNAL_JOB = "c4d5e6f7-0a1b-4c2d-8e3f-456789abcdef"
PARENT = Parent(provider_task_id=PARENT_JOB, action="imagine", params={"prompt": "x"})
UPSCALED = Parent(
    provider_task_id="7e6d5c4b-3a29-4180-b7c6-d5e4f3a2b1c0", action="upscale", params={"index": 1}
)
MASK = base64.b64encode(b"\x89PNG fake mask bytes").decode()


@pytest.fixture
def provider() -> ApiframeProvider:
    return ApiframeProvider(api_key=KEY)


def expected_signature(key: str, body: bytes) -> str:
    # Independent of the adapter: the key is the raw 32-byte digest of the API key.
    return hmac.new(hashlib.sha256(key.encode()).digest(), body, hashlib.sha256).hexdigest()


def test_class_facts(provider: ApiframeProvider) -> None:
    typed: Provider = provider
    assert typed.actions == {"imagine", "upscale", "variation", "inpaint", "zoom", "pan"}
    assert provider.supports_callbacks
    assert provider.signs_callbacks
    assert provider.poll_interval == 2.5
    assert provider.name == "apiframe"
    sim = ApiframeProvider(api_key=KEY, base_url="http://127.0.0.1:9/_sim/", name="simulator")
    assert (sim.name, sim.base_url) == ("simulator", "http://127.0.0.1:9/_sim")


# --- the documented examples -------------------------------------------------------------------


def test_submit_example(provider: ApiframeProvider) -> None:
    submitted = provider.parse_submit(response(202, json.loads(_example("submit"))))
    obs = submitted.observation
    assert submitted.provider_task_id == JOB_ID
    assert obs.status is Status.SUBMITTED
    assert (obs.source, obs.progress, obs.provider_task_id) == ("api", 0, JOB_ID)
    assert obs.dedupe_key == f"submit:{JOB_ID}"
    assert obs.raw == {"jobId": JOB_ID, "status": "QUEUED"}


def test_job_processing_example(provider: ApiframeProvider) -> None:
    obs = provider.parse_query(response(200, json.loads(_example("job.processing"))))
    assert (obs.status, obs.progress, obs.source) == (Status.IN_PROGRESS, 65, "poll")
    assert obs.provider_task_id == JOB_ID
    assert obs.error is None
    assert obs.result is not None
    assert obs.result["images"] == []
    assert obs.result["cost"] == {"credits": 10}


def test_job_completed_example(provider: ApiframeProvider) -> None:
    body = json.loads(_example("job.completed"))
    obs = provider.parse_query(response(200, body))
    assert (obs.status, obs.progress) == (Status.SUCCESS, 100)
    assert obs.result == {
        "images": body["result"]["images"],
        "grid_url": body["result"]["gridUrl"],
        "videos": [],
        "actions": [],
        "cost": {"credits": 10},
        "prompts": [],
        # completedAt 2026-03-15T10:00:32Z + the 24 h Apiframe keeps results
        "expires_at": "2026-03-16T10:00:32.000Z",
        "provider_metadata": None,
    }
    assert len(obs.result["images"]) == 4
    assert obs.raw == body
    assert obs.extra == {}


def test_job_failed_example(provider: ApiframeProvider) -> None:
    obs = provider.parse_query(response(200, json.loads(_example("job.failed"))))
    assert obs.status is Status.FAILURE
    assert obs.error == {
        "code": "provider_failed",
        "message": "Provider returned an error: content policy violation",
        "provider_code": None,
    }


def test_webhook_progress_example(provider: ApiframeProvider) -> None:
    body = _example("webhook.progress")
    [obs] = provider.parse_callback({}, body)
    assert (obs.status, obs.progress, obs.source) == (Status.IN_PROGRESS, 45, "callback")
    assert obs.provider_task_id == JOB_ID
    assert obs.dedupe_key == "cb:" + hashlib.sha256(body).hexdigest()[:32]
    assert obs.result is None
    assert obs.raw == json.loads(body)


def test_webhook_completed_example_string_result(provider: ApiframeProvider) -> None:
    [obs] = provider.parse_callback({}, _example("webhook.completed"))
    assert (obs.status, obs.progress) == (Status.SUCCESS, 100)
    assert obs.result is not None
    assert obs.result["images"] == ["https://cdn.apiframe.ai/results/a1b2c3d4.png"]
    assert obs.result["grid_url"] is None
    assert obs.result["cost"] == {"credits": 10}
    assert obs.result["expires_at"] == "2026-03-16T10:00:32.000Z"
    assert obs.extra == {"event": "completed"}  # recorded in the event's detail


def test_processing_and_failed_jobs_have_no_expiry(provider: ApiframeProvider) -> None:
    running = provider.parse_query(response(200, json.loads(_example("job.processing"))))
    assert running.result is not None and running.result["expires_at"] is None
    failed = provider.parse_query(response(200, json.loads(_example("job.failed"))))
    assert failed.result is not None and failed.result["expires_at"] is None
    odd = {"id": "j", "status": "COMPLETED", "result": "https://x/1.png", "completedAt": "soon"}
    unreadable = provider.parse_query(response(200, odd)).result
    assert unreadable is not None and unreadable["expires_at"] is None


def test_webhook_completed_object_result(provider: ApiframeProvider) -> None:
    body = json.loads(_example("webhook.completed"))
    body["result"] = {
        "images": ["https://x/1.png", "https://x/2.png"],
        "gridUrl": "https://x/g.png",
    }
    [obs] = provider.parse_callback({}, json.dumps(body).encode())
    assert obs.result is not None
    assert obs.result["images"] == ["https://x/1.png", "https://x/2.png"]
    assert obs.result["grid_url"] == "https://x/g.png"


def test_webhook_failed_example(provider: ApiframeProvider) -> None:
    [obs] = provider.parse_callback({}, _example("webhook.failed"))
    assert obs.status is Status.FAILURE
    assert obs.error is not None
    assert obs.error["message"] == "Provider returned an error: content policy violation"


# --- status mapping ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("QUEUED", Status.SUBMITTED),
        ("PROCESSING", Status.IN_PROGRESS),
        ("COMPLETED", Status.SUCCESS),
        ("FAILED", Status.FAILURE),
        ("CANCELLED", Status.CANCEL),
    ],
)
def test_status_map(provider: ApiframeProvider, raw: str, status: Status) -> None:
    obs = provider.parse_query(response(200, {"id": "j", "status": raw}))
    assert obs.status is status
    assert obs.detail is None


@pytest.mark.parametrize("raw", ["PAUSED", "completed", None, 3])
def test_unknown_status_is_not_guessed(provider: ApiframeProvider, raw: Any) -> None:
    obs = provider.parse_query(response(200, {"id": "j", "status": raw}))
    assert obs.status is None
    assert obs.detail == f"unknown Apiframe status {raw!r}"
    [cb] = provider.parse_callback({}, json.dumps({"jobId": "j", "status": "PAUSED"}).encode())
    assert cb.status is None
    assert cb.detail == "unknown Apiframe status 'PAUSED'"


@pytest.mark.parametrize(
    ("event", "status"),
    [("progress", Status.IN_PROGRESS), ("completed", Status.SUCCESS), ("failed", Status.FAILURE)],
)
def test_callback_status_from_event(provider: ApiframeProvider, event: str, status: Status) -> None:
    for body, headers in (
        ({"jobId": "j", "event": event}, {}),
        ({"jobId": "j", "type": event}, {}),
        ({"jobId": "j"}, {"x-WEBHOOK-event": event}),
    ):
        [obs] = provider.parse_callback(headers, json.dumps(body).encode())
        assert obs.status is status


def test_callback_unknown_event_without_status(provider: ApiframeProvider) -> None:
    [obs] = provider.parse_callback({}, b'{"jobId": "j", "event": "exploded"}')
    assert obs.status is None
    assert obs.detail is not None
    assert "exploded" in obs.detail


@pytest.mark.parametrize(
    "body", [b"not json", b"[1, 2]", b'"jobId"', b"{}", b'{"jobId": 7}', b'{"jobId": ""}', b"\xff"]
)
def test_malformed_callback(provider: ApiframeProvider, body: bytes) -> None:
    with pytest.raises(MalformedCallback):
        provider.parse_callback({}, body)


@pytest.mark.parametrize(("value", "expected"), [(45, 45), (150, 100), (-3, 0), ("40", 40)])
def test_progress_is_clamped(provider: ApiframeProvider, value: Any, expected: int) -> None:
    obs = provider.parse_query(
        response(200, {"id": "j", "status": "PROCESSING", "progress": value})
    )
    assert obs.progress == expected


def test_progress_garbage_is_none(provider: ApiframeProvider) -> None:
    for value in (True, "lots", None, [1]):
        body = {"id": "j", "status": "PROCESSING", "progress": value}
        assert provider.parse_query(response(200, body)).progress is None


# --- signatures --------------------------------------------------------------------------------


def test_sign_body_matches_independent_hmac() -> None:
    body = _example("webhook.completed")
    assert sign_body(KEY, body) == "sha256=" + expected_signature(KEY, body)


@pytest.mark.parametrize("form", ["sha256={}", "{}", "SHA256={}", " sha256={} "])
def test_verify_valid(provider: ApiframeProvider, form: str) -> None:
    body = _example("webhook.completed")
    signature = form.format(expected_signature(KEY, body))
    assert provider.verify_callback({"X-Webhook-Signature": signature}, body)
    assert provider.verify_callback({"x-webhook-signature": signature}, body)
    assert provider.verify_callback(Headers({"X-Webhook-Signature": signature}), body)


def test_verify_upper_case_hex(provider: ApiframeProvider) -> None:
    body = b'{"jobId":"j"}'
    signature = expected_signature(KEY, body).upper()
    assert provider.verify_callback({"X-Webhook-Signature": signature}, body)


def test_verify_rejects(provider: ApiframeProvider) -> None:
    body = _example("webhook.completed")
    good = "sha256=" + expected_signature(KEY, body)
    hex_keyed = hmac.new(hashlib.sha256(KEY.encode()).hexdigest().encode(), body, hashlib.sha256)
    cases: list[dict[str, str]] = [
        {},
        {"X-Webhook-Signature": ""},
        {"X-Webhook-Signature": "sha256="},
        {"X-Webhook-Signature": "sha256=zz" + good[9:]},
        {"X-Webhook-Signature": good[:-2]},
        {"X-Webhook-Signature": "sha1=" + good[7:]},
        {"X-Webhook-Signature": "sha256=" + expected_signature("afk_other", body)},
        {"X-Webhook-Signature": "sha256=" + hex_keyed.hexdigest()},
        {"X-Other": good},
    ]
    for headers in cases:
        assert not provider.verify_callback(headers, body), headers
    assert not provider.verify_callback({"X-Webhook-Signature": good}, body + b" ")


# --- validation --------------------------------------------------------------------------------


def test_validate_imagine_cleans(provider: ApiframeProvider) -> None:
    cleaned = provider.validate("imagine", {"prompt": "  a fox  ", "aspect_ratio": "16:9"}, None)
    assert cleaned == {"prompt": "a fox", "aspect_ratio": "16:9"}
    assert provider.validate("imagine", {"prompt": "x" * 2000}, None) == {"prompt": "x" * 2000}


BAD_INPUTS: list[tuple[str, dict[str, Any], Parent | None, str]] = [
    ("describe", {"prompt": "x"}, None, "action"),
    ("imagine", {}, None, "params.prompt"),
    ("imagine", {"prompt": "   "}, None, "params.prompt"),
    ("imagine", {"prompt": 5}, None, "params.prompt"),
    ("imagine", {"prompt": "x" * 2001}, None, "params.prompt"),
    ("imagine", {"prompt": "x", "aspect_ratio": "wide"}, None, "params.aspect_ratio"),
    ("imagine", {"prompt": "x", "aspect_ratio": "0:9"}, None, "params.aspect_ratio"),
    ("imagine", {"prompt": "x", "aspect_ratio": "-1:2"}, None, "params.aspect_ratio"),
    ("imagine", {"prompt": "x", "stylize": 100}, None, "params.stylize"),
    ("imagine", {"prompt": "x"}, PARENT, "parent_id"),
    ("upscale", {"index": 1}, None, "parent_id"),
    ("upscale", {"index": 0}, PARENT, "params.index"),
    ("upscale", {"index": 5}, PARENT, "params.index"),
    ("upscale", {"index": True}, PARENT, "params.index"),
    ("upscale", {"index": "2"}, PARENT, "params.index"),
    ("variation", {}, PARENT, "params.index"),
    ("upscale", {"index": 1, "parent_job_id": 42}, None, "params.parent_job_id"),
    ("upscale", {"index": 1, "parent_job_id": "other"}, PARENT, "params.parent_job_id"),
    ("upscale", {"index": 1, "parent_job_id": "ext-1"}, None, "params.parent_job_id"),
    ("upscale", {"index": 1, "parent_job_id": JOB_ID + "0"}, None, "params.parent_job_id"),
    (
        "upscale",
        {"index": 1},
        Parent(provider_task_id="job-1", action="imagine", params={}),
        "parent_id",
    ),
    ("inpaint", {"prompt": "x"}, UPSCALED, "params.mask"),
    ("inpaint", {"mask": "not base64!!"}, UPSCALED, "params.mask"),
    ("inpaint", {"mask": "data:text/plain;base64," + MASK}, UPSCALED, "params.mask"),
    ("inpaint", {"mask": MASK, "prompt": "x" * 2001}, UPSCALED, "params.prompt"),
    ("inpaint", {"mask_url": "https://example.com/m.png"}, UPSCALED, "params.mask_url"),
    ("inpaint", {"mask": MASK}, PARENT, "parent_id"),
    ("inpaint", {"mask": MASK}, None, "parent_id"),
    ("zoom", {"zoom_ratio": 3}, PARENT, "params.zoom_ratio"),
    ("zoom", {}, PARENT, "params.zoom_ratio"),
    ("zoom", {"zoom_ratio": True}, PARENT, "params.zoom_ratio"),
    ("pan", {"direction": "diagonal"}, PARENT, "params.direction"),
    ("pan", {}, PARENT, "params.direction"),
    ("pan", {"direction": "up", "index": 1}, PARENT, "params.index"),
]


@pytest.mark.parametrize(("action", "params", "parent", "field"), BAD_INPUTS)
def test_validate_errors(
    provider: ApiframeProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent | None,
    field: str,
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate(action, params, parent)
    assert caught.value.field == field


def test_mask_url_message(provider: ApiframeProvider) -> None:
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("inpaint", {"mask_url": "https://e.com/m.png"}, UPSCALED)
    assert "base64 in params.mask" in caught.value.detail


def test_mask_size_limit(provider: ApiframeProvider) -> None:
    limit = 8 * 1024 * 1024
    just_fits = base64.b64encode(b"\0" * limit).decode()
    assert provider.validate("inpaint", {"mask": just_fits}, UPSCALED)["mask"] == just_fits
    too_big = base64.b64encode(b"\0" * (limit + 1)).decode()
    with pytest.raises(ValidationFailed) as caught:
        provider.validate("inpaint", {"mask": too_big}, UPSCALED)
    assert caught.value.field == "params.mask"


def test_mask_data_prefix_and_whitespace(provider: ApiframeProvider) -> None:
    masked = "data:image/png;base64," + MASK[:8] + "\n" + MASK[8:]
    cleaned = provider.validate("inpaint", {"mask": masked, "prompt": " balloon "}, UPSCALED)
    assert cleaned == {"mask": "data:image/png;base64," + MASK, "prompt": "balloon"}


def test_external_parent_by_job_id(provider: ApiframeProvider) -> None:
    params = {"index": 2, "parent_job_id": f" {EXTERNAL_JOB} "}
    cleaned = provider.validate("upscale", params, None)
    assert cleaned == {"index": 2, "parent_job_id": EXTERNAL_JOB}
    same = provider.validate("upscale", {"index": 2, "parent_job_id": PARENT_JOB}, PARENT)
    assert same["index"] == 2


# --- request bodies ----------------------------------------------------------------------------

HOOK = "https://jobhook.example/v1/callbacks/apiframe/tok"
EVENTS = ["progress", "completed", "failed"]


def test_build_imagine(provider: ApiframeProvider) -> None:
    request = provider.build_submit(
        "imagine",
        {"prompt": "a fox", "aspect_ratio": "16:9"},
        parent=None,
        callback_url=HOOK,
        idempotency_key="idem-1",
    )
    assert (request.method, request.path) == ("POST", "/v2/images/generate")
    assert request.json == {
        "prompt": "a fox",
        "model": "midjourney",
        "midjourneyParams": {"aspect_ratio": "16:9"},
        "webhookUrl": HOOK,
        "webhookEvents": EVENTS,
    }
    assert request.headers["X-API-Key"] == KEY
    assert request.headers["Idempotency-Key"] == "idem-1"


def test_build_imagine_minimal(provider: ApiframeProvider) -> None:
    request = provider.build_submit("imagine", {"prompt": "a fox"}, parent=None, callback_url=None)
    assert request.json == {"prompt": "a fox", "model": "midjourney"}
    assert "Idempotency-Key" not in request.headers
    assert request.headers["X-API-Key"] == KEY


@pytest.mark.parametrize(
    ("action", "params", "parent", "expected"),
    [
        ("upscale", {"index": 2}, PARENT, {"action": "upsample", "index": 2}),
        ("variation", {"index": 4}, PARENT, {"action": "variation", "index": 4}),
        (
            "inpaint",
            {"mask": MASK, "prompt": "balloon"},
            UPSCALED,
            {"action": "inpaint", "mask": MASK, "prompt": "balloon"},
        ),
        ("inpaint", {"mask": MASK}, UPSCALED, {"action": "inpaint", "mask": MASK}),
        ("zoom", {"zoom_ratio": 1.5}, PARENT, {"action": "outpaint", "zoomRatio": 1.5}),
        ("zoom", {"zoom_ratio": 2.0}, PARENT, {"action": "outpaint", "zoomRatio": 2}),
        ("pan", {"direction": "left"}, PARENT, {"action": "pan", "direction": "left"}),
    ],
)
def test_build_follow_ups(
    provider: ApiframeProvider,
    action: str,
    params: dict[str, Any],
    parent: Parent,
    expected: dict[str, Any],
) -> None:
    request = provider.build_submit(action, params, parent=parent, callback_url=HOOK)
    assert (request.method, request.path) == ("POST", "/v2/images/midjourney/action")
    assert request.json == {
        **expected,
        "parentJobId": parent.provider_task_id,
        "webhookUrl": HOOK,
        "webhookEvents": EVENTS,
    }


def test_build_follow_up_external_parent(provider: ApiframeProvider) -> None:
    params = {"index": 1, "parent_job_id": EXTERNAL_JOB}
    request = provider.build_submit("upscale", params, parent=None, callback_url=None)
    assert request.json == {"action": "upsample", "parentJobId": EXTERNAL_JOB, "index": 1}


def test_webhook_url_is_https_only(provider: ApiframeProvider) -> None:
    """ "webhookUrl: HTTPS URL" (seed 004): an http:// one is never sent (the task is polled);
    the simulator, on loopback, takes http://."""
    plain = "http://jobhook.example/v1/callbacks/apiframe/tok"
    request = provider.build_submit("imagine", {"prompt": "a fox"}, parent=None, callback_url=plain)
    assert request.json == {"prompt": "a fox", "model": "midjourney"}
    loud = "HTTPS://jobhook.example/v1/callbacks/apiframe/tok"
    request = provider.build_submit("imagine", {"prompt": "a fox"}, parent=None, callback_url=loud)
    assert request.json["webhookUrl"] == loud
    sim = ApiframeProvider(api_key=KEY, base_url="http://127.0.0.1:9/_sim", name="simulator")
    sim.webhooks_need_https = False
    request = sim.build_submit("imagine", {"prompt": "a fox"}, parent=None, callback_url=plain)
    assert request.json["webhookUrl"] == plain


def test_build_submit_validates(provider: ApiframeProvider) -> None:
    with pytest.raises(ValidationFailed):
        provider.build_submit("upscale", {"index": 9}, parent=PARENT, callback_url=None)


def test_build_query(provider: ApiframeProvider) -> None:
    request = provider.build_query(JOB_ID)
    assert (request.method, request.path, request.json) == ("GET", f"/v2/jobs/{JOB_ID}", None)
    assert request.headers["X-API-Key"] == KEY


# --- error mapping -----------------------------------------------------------------------------


def test_submit_400_with_details(provider: ApiframeProvider) -> None:
    body = {"error": "Validation failed", "details": {"prompt": ["Too long"], "x": ["y"]}}
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(400, body))
    error = caught.value
    assert (error.http_status, error.status, error.provider_code) == (400, 400, "400")
    assert error.field == "params.prompt"
    assert "Validation failed" in error.detail
    assert "Too long" in error.detail


@pytest.mark.parametrize(
    ("path", "field"),
    [("zoomRatio", "params.zoom_ratio"), ("parentJobId", "parent_id"), ("style", "params.style")],
)
def test_submit_400_field_names(provider: ApiframeProvider, path: str, field: str) -> None:
    body = {"error": "Validation failed", "details": {path: ["bad"]}}
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(400, body))
    assert caught.value.field == field


def test_submit_402_mentions_credits(provider: ApiframeProvider) -> None:
    body = {"error": "Insufficient credits", "creditsRequired": 16, "creditsAvailable": 3}
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(402, body))
    assert caught.value.http_status == 402
    assert "Insufficient credits" in caught.value.detail
    assert "16" in caught.value.detail
    assert "3" in caught.value.detail


def test_submit_409_and_body_code(provider: ApiframeProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_submit(response(409, {"error": "Action not available"}))
    assert (caught.value.http_status, caught.value.provider_code) == (409, "409")
    assert caught.value.detail == "Action not available"
    with pytest.raises(ProviderRejected) as coded:
        provider.parse_submit(response(403, {"error": "No", "code": "FORBIDDEN"}))
    assert coded.value.provider_code == "FORBIDDEN"


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("1.5", 1.5), ("soon", None)])
def test_submit_429(provider: ApiframeProvider, header: str, seconds: float | None) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_submit(
            response(429, {"error": "Too many requests"}, {"retry-after": header})
        )
    assert caught.value.retry_after == seconds


def test_submit_429_http_date(provider: ApiframeProvider) -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    with pytest.raises(ProviderUnavailable) as caught:
        provider.parse_submit(response(429, {"error": "slow down"}, headers))
    assert caught.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": "Internal"}),
        (503, b"<html>down</html>"),
        (400, b"<html>bad gateway page</html>"),
        (202, b"not json"),
        (202, {"status": "QUEUED"}),
        (202, [1, 2]),
        (302, b""),
    ],
)
def test_submit_unavailable(provider: ApiframeProvider, status: int, body: Any) -> None:
    with pytest.raises(ProviderUnavailable):
        provider.parse_submit(response(status, body))


def test_submit_odd_status_still_submitted(provider: ApiframeProvider) -> None:
    submitted = provider.parse_submit(response(201, {"jobId": "j", "status": "PROCESSING"}))
    assert submitted.observation.status is Status.IN_PROGRESS
    odd = provider.parse_submit(response(202, {"jobId": "j", "status": "WEIRD"})).observation
    assert odd.status is Status.SUBMITTED
    assert odd.detail is not None


def test_query_errors(provider: ApiframeProvider) -> None:
    with pytest.raises(ProviderRejected) as caught:
        provider.parse_query(response(404, {"error": "Job not found"}))
    assert caught.value.http_status == 404
    for status in (429, 500, 502):
        with pytest.raises(ProviderUnavailable):
            provider.parse_query(response(status, {"error": "x"}, {"Retry-After": "3"}))
    with pytest.raises(ProviderUnavailable):
        provider.parse_query(response(200, b"garbage"))


def test_query_result_forms(provider: ApiframeProvider) -> None:
    def result_of(value: Any) -> Observation:
        return provider.parse_query(response(200, {"id": "j", "status": "COMPLETED", **value}))

    single = result_of({"result": "https://x/1.png"}).result
    assert single is not None
    assert (single["images"], single["grid_url"], single["cost"]) == (
        ["https://x/1.png"],
        None,
        None,
    )
    assert result_of({"result": None}).result is None
    cost_only = result_of({"result": None, "creditCost": 4}).result
    assert cost_only is not None
    assert (cost_only["images"], cost_only["cost"]) == ([], {"credits": 4})
    expired = result_of({"result": None, "expired": True})
    assert expired.extra == {"expired": True}


def _example(name: str) -> Any:
    return example_bytes("apiframe", name)


@pytest.mark.parametrize(
    ("keys", "base_url", "public_url", "off"),
    [
        ({"apiframe": KEY}, "https://api.apiframe.ai", "http://127.0.0.1:8000", True),
        ({"apiframe": KEY}, "https://api.apiframe.ai", "https://jobhook.example.com", False),
        ({"apiframe": KEY}, "https://api.apiframe.ai", "HTTPS://jobhook.example.com", False),
        ({"apiframe": KEY}, "https://staging.apiframe.example", "http://jobhook.example", True),
        # a rehearsal against `jobhook simulator` on this machine takes http://
        ({"apiframe": KEY}, "http://127.0.0.1:9000", "http://127.0.0.1:8000", False),
        ({"apiframe": KEY}, "http://[::1]:9000", "http://127.0.0.1:8000", False),
        ({"apiframe": KEY}, "http://localhost:9000", "http://127.0.0.1:8000", False),
        ({}, "https://api.apiframe.ai", "http://127.0.0.1:8000", False),  # not enabled
    ],
)
def test_apiframe_webhooks_need_an_https_public_url(
    keys: dict[str, str], base_url: str, public_url: str, off: bool
) -> None:
    settings = Settings(provider_keys=keys, provider_urls={"apiframe": base_url})
    assert webhooks_off(settings, public_url) is off
    providers = build_providers(settings, simulator_url=None, public_url=public_url)
    if keys:
        apiframe = providers["apiframe"]
        assert isinstance(apiframe, ApiframeProvider)
        assert apiframe.supports_callbacks is not off
        # the adapter sends http:// webhook URLs only to an Apiframe on loopback
        assert apiframe.webhooks_need_https is not base_url.startswith("http://")
    assert ApiframeProvider.supports_callbacks  # the class is untouched
