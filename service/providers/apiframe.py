"""Apiframe v2 adapter: jobhook actions to Apiframe's REST calls, and Apiframe's jobs and signed
webhooks back to Observations. Plain translation; the caller does the I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

from service.domain.clock import parse_rfc3339, to_iso
from service.domain.models import Observation, Result, Source, empty_result, task_error
from service.domain.status import Status
from service.errors import (
    JobhookError,
    MalformedCallback,
    ProviderRejected,
    ProviderUnavailable,
    ValidationFailed,
)
from service.providers import params as check
from service.providers import wire
from service.providers.base import Parent, ProviderRequest, ProviderResponse, Submitted

DEFAULT_BASE_URL: Final = "https://api.apiframe.ai"
PROMPT_MAX_CHARS: Final = 2000
MASK_MAX_BYTES: Final = 8 * 1024 * 1024
#: "Results purged after 24 h (`expired: true`)" (../shared/providers/README.md, Apiframe).
RESULTS_KEPT: Final = timedelta(hours=24)
#: jobhook always subscribes to every event; polling stays the safety net.
WEBHOOK_EVENTS: Final = ("progress", "completed", "failed")

STATUS_MAP: Final[Mapping[str, Status]] = {
    "QUEUED": Status.SUBMITTED,
    "PROCESSING": Status.IN_PROGRESS,
    "COMPLETED": Status.SUCCESS,
    "FAILED": Status.FAILURE,
    "CANCELLED": Status.CANCEL,
}
#: Webhooks name the event; a body without `status` still says what happened.
_EVENT_STATUS: Final = {"progress": "PROCESSING", "completed": "COMPLETED", "failed": "FAILED"}
#: jobhook follow-up action -> Apiframe's `action` value.
FOLLOW_UPS: Final[Mapping[str, str]] = {
    "upscale": "upsample",
    "variation": "variation",
    "inpaint": "inpaint",
    "zoom": "outpaint",
    "pan": "pan",
}
_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "imagine": frozenset({"prompt", "aspect_ratio"}),
    "upscale": frozenset({"index", "parent_job_id"}),
    "variation": frozenset({"index", "parent_job_id"}),
    "inpaint": frozenset({"mask", "prompt", "parent_job_id"}),
    "zoom": frozenset({"zoom_ratio", "parent_job_id"}),
    "pan": frozenset({"direction", "parent_job_id"}),
}
#: Apiframe's field paths in a 400 `details`, named as the client spelled them.
_FIELDS: Final = {
    "prompt": "params.prompt",
    "midjourneyParams.aspect_ratio": "params.aspect_ratio",
    "aspect_ratio": "params.aspect_ratio",
    "index": "params.index",
    "mask": "params.mask",
    "zoomRatio": "params.zoom_ratio",
    "direction": "params.direction",
    "parentJobId": "parent_id",
}
_DATA_URL_RE: Final = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")
_HEX_SIG_RE: Final = re.compile(r"(?i:sha256=)?([0-9a-fA-F]{64})")
_UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


def sign_body(api_key: str, body: bytes) -> str:
    """Apiframe's webhook signature: `sha256=` + hex HMAC-SHA256 keyed by sha256(api_key)."""
    return "sha256=" + hmac.new(_signing_key(api_key), body, hashlib.sha256).hexdigest()


def _signing_key(api_key: str) -> bytes:
    # The raw 32-byte digest, not its hex text: the hex form verifies nothing Apiframe sent.
    return hashlib.sha256(api_key.encode()).digest()


class ApiframeProvider(wire.Adapter):
    """Apiframe v2 (`X-API-Key`, signed webhooks); also the embedded simulator's dialect."""

    name = "apiframe"
    base_url = DEFAULT_BASE_URL
    actions: frozenset[str] = frozenset(_PARAMS)
    supports_callbacks = True
    signs_callbacks = True
    poll_interval = 2.5
    idempotent_submit = True

    def __init__(
        self, *, api_key: str, base_url: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, name=name)
        self._signing_key = _signing_key(api_key)
        #: "webhookUrl: HTTPS URL" (seed 004): an http:// callback URL is never sent (the task
        #: is polled instead). The embedded simulator, which speaks Apiframe's dialect on
        #: loopback, takes http:// too.
        self.webhooks_need_https = True

    def validate(
        self, action: str, params: Mapping[str, Any], parent: Parent | None
    ) -> dict[str, Any]:
        check.action("Apiframe", action, self.actions)
        if "mask_url" in params:
            raise ValidationFailed(
                "params.mask_url", "Apiframe takes the mask as base64 in params.mask"
            )
        for name in params:
            if name not in _PARAMS[action]:
                raise ValidationFailed(f"params.{name}", f"not a parameter of {action} on Apiframe")
        if action == "imagine":
            if parent is not None:
                raise ValidationFailed("parent_id", "imagine takes no parent")
            cleaned: dict[str, Any] = {"prompt": _prompt(params.get("prompt"), required=True)}
            if params.get("aspect_ratio") is not None:
                cleaned["aspect_ratio"] = check.aspect_ratio(
                    "params.aspect_ratio", params["aspect_ratio"]
                )
            return cleaned

        cleaned = {}
        job_id = _parent_job_id(action, params, parent)
        if "parent_job_id" in params:
            cleaned["parent_job_id"] = job_id
        if action in ("upscale", "variation"):
            cleaned["index"] = check.whole("params.index", params.get("index"), 1, 4)
        elif action == "inpaint":
            if parent is not None and parent.action != "upscale":
                raise ValidationFailed(
                    "parent_id", "Apiframe inpaints an upscaled image only: upscale one first"
                )
            cleaned["mask"] = _mask(params.get("mask"))
            if prompt := _prompt(params.get("prompt"), required=False):
                cleaned["prompt"] = prompt
        elif action == "zoom":
            cleaned["zoom_ratio"] = _zoom_ratio(params.get("zoom_ratio"))
        else:
            cleaned["direction"] = check.direction("params.direction", params.get("direction"))
        return cleaned

    def build_submit(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        parent: Parent | None,
        callback_url: str | None,
        idempotency_key: str | None = None,
    ) -> ProviderRequest:
        # Validating again is cheap and idempotent, and it keeps a bad body off the wire.
        cleaned = self.validate(action, params, parent)
        hooks: dict[str, Any] = {}
        if callback_url and (
            callback_url[:8].lower() == "https://" or not self.webhooks_need_https
        ):
            hooks = {"webhookUrl": callback_url, "webhookEvents": list(WEBHOOK_EVENTS)}
        if action == "imagine":
            body: dict[str, Any] = {"prompt": cleaned["prompt"], "model": "midjourney"}
            if "aspect_ratio" in cleaned:
                body["midjourneyParams"] = {"aspect_ratio": cleaned["aspect_ratio"]}
            return self._request("POST", "/v2/images/generate", {**body, **hooks}, idempotency_key)

        body = {
            "action": FOLLOW_UPS[action],
            "parentJobId": _parent_job_id(action, cleaned, parent),
        }
        if "index" in cleaned:
            body["index"] = cleaned["index"]
        if "mask" in cleaned:
            body["mask"] = cleaned["mask"]
            if "prompt" in cleaned:
                body["prompt"] = cleaned["prompt"]
        if "zoom_ratio" in cleaned:
            body["zoomRatio"] = cleaned["zoom_ratio"]
        if "direction" in cleaned:
            body["direction"] = cleaned["direction"]
        return self._request(
            "POST", "/v2/images/midjourney/action", {**body, **hooks}, idempotency_key
        )

    def parse_submit(self, response: ProviderResponse) -> Submitted:
        body = wire.json_object(response.body)
        if not 200 <= response.status_code < 300:
            raise _error(response, body)
        job_id = body.get("jobId") if body is not None else None
        if body is None or not isinstance(job_id, str) or not job_id:
            raise ProviderUnavailable("Apiframe accepted the request but sent no jobId")
        raw_status = body.get("status", "QUEUED")
        status = STATUS_MAP.get(raw_status) if isinstance(raw_status, str) else None
        # A 2xx with a jobId is an acceptance whatever else it says; an odd status is noted.
        detail = None if status else f"unknown Apiframe status {raw_status!r} on submit"
        return wire.accepted(job_id, status=status or Status.SUBMITTED, raw=body, detail=detail)

    def build_query(self, provider_task_id: str) -> ProviderRequest:
        # Quoted: the id came off the wire and must not steer the request to another path.
        return self._request("GET", f"/v2/jobs/{quote(provider_task_id, safe='')}", None, None)

    def parse_query(self, response: ProviderResponse) -> Observation:
        body = wire.json_object(response.body)
        if response.status_code == 404:
            message = _error_text(body) or "Apiframe has no such job (or it expired)"
            raise ProviderRejected(message, http_status=404, provider_code="404")
        if not 200 <= response.status_code < 300:
            raise _error(response, body)
        job_id = body.get("id") if body is not None else None
        if body is None or not isinstance(job_id, str):
            raise ProviderUnavailable("Apiframe answered a job query with an unreadable body")
        return _observation(body, body.get("status"), source="poll", job_id=job_id)

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        match = _HEX_SIG_RE.fullmatch((wire.header(headers, "x-webhook-signature") or "").strip())
        if match is None:
            return False
        expected = hmac.new(self._signing_key, body, hashlib.sha256).digest()
        return hmac.compare_digest(bytes.fromhex(match.group(1)), expected)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        parsed = wire.callback_object("Apiframe", body)
        job_id = parsed.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise MalformedCallback("Apiframe callback has no jobId")
        event = parsed.get("event") or parsed.get("type") or wire.header(headers, "x-webhook-event")
        raw_status = parsed.get("status")
        if raw_status is None and isinstance(event, str):
            raw_status = _EVENT_STATUS.get(event.strip().lower())
        observation = _observation(
            parsed,
            raw_status,
            source="callback",
            job_id=job_id,
            dedupe_key=wire.callback_dedupe_key(body),
            event=event if isinstance(event, str) else None,
        )
        return [observation]

    def _request(
        self, method: str, path: str, body: Any, idempotency_key: str | None
    ) -> ProviderRequest:
        auth = {"X-API-Key": self._api_key}
        return wire.request(method, path, body, auth=auth, idempotency_key=idempotency_key)


def _observation(
    body: Mapping[str, Any],
    raw_status: Any,
    *,
    source: Source,
    job_id: str,
    dedupe_key: str | None = None,
    event: str | None = None,
) -> Observation:
    """A job object (poll) or webhook body (callback) as an Observation; both share one shape."""
    status = STATUS_MAP.get(raw_status) if isinstance(raw_status, str) else None
    detail = None
    if status is None:
        detail = f"unknown Apiframe status {raw_status!r}"
        if raw_status is None and event is not None:
            detail = f"Apiframe callback without status, unknown event {event!r}"
    error = None
    if status is Status.FAILURE:
        message = body.get("error")
        if not isinstance(message, str) or not message:
            message = "Apiframe reported the job failed"
        error = task_error("provider_failed", message, provider_code=None)
    extra: dict[str, Any] = {}
    if event is not None:
        extra["event"] = event
    if body.get("expired") is True:
        extra["expired"] = True
    return Observation(
        status=status,
        source=source,
        progress=wire.progress(body.get("progress")),
        result=_result(body),
        error=error,
        provider_task_id=job_id,
        dedupe_key=dedupe_key,
        raw=body,
        detail=detail,
        extra=extra,
    )


def _result(body: Mapping[str, Any]) -> Result | None:
    """`result` as an object `{images, gridUrl}`, a single URL (older docs) or null, plus cost."""
    value, credits = body.get("result"), body.get("creditCost")
    has_credits = isinstance(credits, int | float) and not isinstance(credits, bool)
    if value is None and not has_credits:
        return None
    result = empty_result()
    if isinstance(value, str) and value:
        result["images"] = [value]
    elif isinstance(value, Mapping):
        images = value.get("images")
        if isinstance(images, str):
            images = [images]
        if isinstance(images, list):
            result["images"] = [url for url in images if isinstance(url, str) and url]
        grid = value.get("gridUrl")
        result["grid_url"] = grid if isinstance(grid, str) and grid else None
    if has_credits:
        result["cost"] = {"credits": credits}
    if result["images"]:
        result["expires_at"] = _expires_at(body.get("completedAt"))
    return result


def _expires_at(completed_at: Any) -> str | None:
    """When a finished job's images go: Apiframe purges results RESULTS_KEPT after the job
    completed (then `expired: true`); None without a readable `completedAt`."""
    if not isinstance(completed_at, str):
        return None
    try:
        return to_iso(parse_rfc3339(completed_at) + RESULTS_KEPT)
    except (ValueError, OverflowError):
        return None


def _error(response: ProviderResponse, body: dict[str, Any] | None) -> JobhookError:
    """Apiframe's `{"error": ...}` answers as jobhook errors: 4xx refused, 429/5xx/garbage later."""
    status = response.status_code
    text = _error_text(body) or f"Apiframe answered HTTP {status}"
    if status == 429 or body is None or not 400 <= status < 500:
        return wire.unavailable("Apiframe", status, text, response.headers)
    field = None
    details = body.get("details")
    if isinstance(details, Mapping) and details:
        path, messages = next(iter(details.items()))
        field = _FIELDS.get(str(path), f"params.{path}")
        if isinstance(messages, list) and messages:
            text = f"{text}: {path}: {messages[0]}"
    if status == 402:
        needed, available = body.get("creditsRequired"), body.get("creditsAvailable")
        text = f"{text} (credits required: {needed}, available: {available})"
    code = body.get("code")
    if isinstance(code, str | int) and not isinstance(code, bool):
        provider_code = str(code)
    else:
        provider_code = str(status)
    return ProviderRejected(text, http_status=status, provider_code=provider_code, field=field)


def _error_text(body: Mapping[str, Any] | None) -> str | None:
    text = body.get("error") if body is not None else None
    return text if isinstance(text, str) and text else None


def _prompt(value: Any, *, required: bool) -> str | None:
    return check.prompt(value, required=required, max_chars=PROMPT_MAX_CHARS)


def _parent_job_id(action: str, params: Mapping[str, Any], parent: Parent | None) -> str:
    job_id = check.parent_job_id(
        action, params, parent, key="parent_job_id", provider="Apiframe", job="an Apiframe job"
    )
    # "parentJobId string (uuid)" (seed 004): anything else Apiframe refuses, after a round trip.
    if not _UUID_RE.fullmatch(job_id):
        if parent is not None:
            raise ValidationFailed("parent_id", "the parent's Apiframe job id is not a uuid")
        raise ValidationFailed("params.parent_job_id", "must be an Apiframe job id (a uuid)")
    return job_id


def _mask(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed("params.mask", "is required: a base64 image (data: prefix allowed)")
    text = "".join(value.split())
    payload = _DATA_URL_RE.sub("", text, count=1) if text.startswith("data:") else text
    if payload.startswith("data:"):
        raise ValidationFailed("params.mask", "only a data:image/...;base64, prefix is allowed")
    decoded = check.base64_payload("params.mask", payload, max_bytes=MASK_MAX_BYTES)
    if not decoded or len(decoded) > MASK_MAX_BYTES:
        raise ValidationFailed("params.mask", "must decode to 1 byte .. 8 MiB")
    return text


def _zoom_ratio(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value not in (1.5, 2):
        raise ValidationFailed("params.zoom_ratio", "must be 1.5 or 2")
    return 2 if value == 2 else 1.5
