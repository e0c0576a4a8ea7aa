"""Vtrix adapter: jobhook's Midjourney follow-ups (inpaint, edits, remix, uploadpaint) to Vtrix's
`POST /model/v1/generation`, and Vtrix tasks back to Observations. Plain translation.

Vtrix documents the request and the task query; several things it leaves undocumented, and the
adapter is defensive about each one instead of guessing:

- The submit answer is not printed. Accepted: the task object, or it wrapped in `{"data": ...}`
  (with or without a `code`), the id under `id`, `task_id` or `taskId`. A 2xx without any id is
  refused as an unexpected answer; the status, if any, only says SUBMITTED or IN_PROGRESS.
- Errors come in several shapes (`{"error": {"code", "error_message" | "message"}}`,
  `{"error": "text"}`, a top-level `{"code", "message"}`), and the 004006xxx codes lose their
  leading zeros when printed as integers (4006098): both forms map to one 9-digit code.
- The callback body, headers, signing and retries are undocumented. A callback is only a hint:
  jobhook confirms it by fetching the task (`build_query` / `parse_query`), so `parse_callback`
  only pulls out a task id and `verify_callback` cannot verify anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import orjson

from service.domain.models import Observation, Result, Source, TaskError, empty_result, task_error
from service.domain.numbers import whole_number
from service.domain.status import Status
from service.errors import (
    JobhookError,
    MalformedCallback,
    ProviderRejected,
    ProviderUnavailable,
)
from service.providers import vtrix_params, wire
from service.providers.base import Parent, ProviderRequest, ProviderResponse, Submitted

DEFAULT_BASE_URL: Final = "https://cloud.vtrix.ai"
GENERATION_PATH: Final = "/model/v1/generation"
CALLBACK_HINT: Final = "hint: Vtrix callbacks are unsigned; the task is fetched to confirm"

STATUS_MAP: Final[Mapping[str, Status]] = {
    "pending": Status.SUBMITTED,
    "processing": Status.IN_PROGRESS,
    "in_progress": Status.IN_PROGRESS,
    "completed": Status.SUCCESS,
    "failed": Status.FAILURE,
    # Vtrix documents no cancelled state: one would be recorded as rejected, never guessed.
}
#: The midjourney_inpaint error codes, as 9-digit strings.
CODE_MESSAGES: Final[Mapping[str, str]] = {
    "004006001": "Task ID missing",
    "004006002": "Image number missing",
    "004006003": "Invalid image number",
    "004006004": "Invalid remix prompt length",
    "004006005": "Mask parameters missing",
    "004006006": "Invalid mask parameters",
    "004006007": "Invalid callback URL",
    "004006098": "Generation failed",
    "004006099": "Service unavailable",
}
UNAVAILABLE_CODE: Final = "004006099"
#: The largest `metadata` kept in a task's result, in bytes of JSON (as params' objects).
METADATA_MAX_BYTES: Final = 16 * 1024
#: Which jobhook field a Vtrix validation code is about (masks: mask_url or mask_areas, unknown).
_CODE_FIELDS: Final = {
    "004006001": "parent_id",
    "004006002": "params.index",
    "004006003": "params.index",
    "004006004": "params.prompt",
}
_SUCCESS_CODES: Final = frozenset({"0", "200", "success", "ok"})
_ID_KEYS: Final = ("id", "task_id", "taskId")


class VtrixProvider(wire.Adapter):
    """Vtrix (`Authorization: Bearer`, unsigned callback hints confirmed by fetching)."""

    name = "vtrix"
    base_url = DEFAULT_BASE_URL
    actions: frozenset[str] = frozenset(vtrix_params.MODELS)
    supports_callbacks = True
    signs_callbacks = False
    poll_interval = 5.0
    idempotent_submit = False

    def validate(
        self, action: str, params: Mapping[str, Any], parent: Parent | None
    ) -> dict[str, Any]:
        return vtrix_params.validate(action, params, parent)

    def build_submit(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        parent: Parent | None,
        callback_url: str | None,
        idempotency_key: str | None = None,
    ) -> ProviderRequest:
        # No idempotency header: Vtrix documents none, and an unknown header would be a guess.
        cleaned = self.validate(action, params, parent)
        body: dict[str, Any] = {
            "model": vtrix_params.MODELS[action],
            "jobId": vtrix_params.parent_job_id(action, cleaned, parent),
            "imageNo": cleaned["index"] - 1,
        }
        if "mask_url" in cleaned:
            body["mask"] = {"url": cleaned["mask_url"]}
        elif "mask_areas" in cleaned:
            body["mask"] = {"areas": cleaned["mask_areas"]}
        if "prompt" in cleaned:
            body["remixPrompt"] = cleaned["prompt"]
        if callback_url:
            body["callback"] = callback_url
        return self._request("POST", GENERATION_PATH, body)

    def parse_submit(self, response: ProviderResponse) -> Submitted:
        body = wire.json_object(response.body)
        if not 200 <= response.status_code < 300:
            raise _error(response, body)
        task = _unwrap(body)
        task_id = _task_id(task)
        if task is None or task_id is None:
            if body is not None and _is_error(body):
                raise _error(response, body)
            raise ProviderUnavailable("Vtrix accepted the request with an unexpected answer")
        raw_status = task.get("status")
        status = _status(raw_status)
        detail = None
        if status not in (Status.SUBMITTED, Status.IN_PROGRESS):
            # An accepted task is queued or running; anything else the first poll will tell.
            if raw_status is not None:
                detail = f"Vtrix answered status {raw_status!r} on submit"
            status = Status.SUBMITTED
        return wire.accepted(task_id, status=status, raw=body, detail=detail)

    def build_query(self, provider_task_id: str) -> ProviderRequest:
        # Quoted: the id came off the wire and must not steer the request to another path.
        return self._request(
            "GET", f"{GENERATION_PATH}/task/{quote(provider_task_id, safe='')}", None
        )

    def parse_query(self, response: ProviderResponse) -> Observation:
        body = wire.json_object(response.body)
        if response.status_code == 401:
            # Our key, not the task: keep the task alive (the poller backs off) until it is fixed.
            raise ProviderUnavailable("Vtrix rejected the API key")
        if not 200 <= response.status_code < 300:
            raise _error(response, body, query=True)
        task = _unwrap(body)
        if task is None or ("status" not in task and _task_id(task) is None):
            if body is not None and _is_error(body):
                raise _error(response, body, query=True)
            raise ProviderUnavailable("Vtrix answered a task query with an unreadable body")
        return _observation(task, source="poll")

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        # Nothing to verify: Vtrix documents no signature. Authenticity comes from jobhook's
        # signed URL token, and the truth from the fetch the callback route makes on a hint.
        return True

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        if not body.strip():
            raise MalformedCallback("Vtrix callback body is empty")
        parsed = wire.callback_object("Vtrix", body)
        task = _unwrap(parsed) or parsed
        observation = Observation(
            status=_status(task.get("status")),
            source="callback",
            provider_task_id=_task_id(task) or _task_id(parsed),
            dedupe_key=wire.callback_dedupe_key(body),
            raw=parsed,
            detail=CALLBACK_HINT,
        )
        return [observation]

    def _request(self, method: str, path: str, body: Any) -> ProviderRequest:
        return wire.request(method, path, body, auth={"Authorization": f"Bearer {self._api_key}"})


def normalize_code(value: Any) -> str | None:
    """A Vtrix error code as text; the 004006xxx family always as 9 digits (4006098 too)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    if not text:
        return None
    number = whole_number(text)
    if number is not None and number // 1000 == 4006:
        return f"{number:09d}"
    return text


def _observation(task: Mapping[str, Any], *, source: Source) -> Observation:
    raw_status = task.get("status")
    status = _status(raw_status)
    return Observation(
        status=status,
        source=source,
        progress=_progress(task.get("progress")),
        result=_result(task),
        error=_failure(task.get("error")) if status is Status.FAILURE else None,
        provider_task_id=_task_id(task),
        raw=task,
        detail=None if status is not None else f"unknown Vtrix status {raw_status!r}",
    )


def _status(raw: Any) -> Status | None:
    return STATUS_MAP.get(raw.strip().lower()) if isinstance(raw, str) else None


def _progress(value: Any) -> int | None:
    """A 0.0..1.0 fraction as 0..100; a value over 1 is already a percent (some APIs send it)."""
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            value = float(text.rstrip("%"))
        except ValueError:
            return None
        if percent:
            value /= 100
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    number = value * 100 if value <= 1 else value
    return max(0, min(100, round(number)))


def _result(task: Mapping[str, Any]) -> Result | None:
    """`output[].content[]` by type (image, video), `usage` as cost and a non-empty `metadata`
    as provider_metadata; None if none of them."""
    output, usage, metadata = task.get("output"), task.get("usage"), task.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata:
        metadata = None
    if not isinstance(output, list) and not isinstance(usage, Mapping) and metadata is None:
        return None
    result = empty_result()
    if metadata is not None:
        result["provider_metadata"] = _bounded_metadata(metadata)
    for item in output if isinstance(output, list) else ():
        content = item.get("content") if isinstance(item, Mapping) else None
        for part in content if isinstance(content, list) else ():
            if not isinstance(part, Mapping):
                continue
            kind, url = part.get("type"), part.get("url")
            if not isinstance(url, str) or not url:
                continue
            if kind == "image":
                result["images"].append(url)
            elif kind == "video":
                result["videos"].append(url)
    if isinstance(usage, Mapping):
        cost = usage.get("cost")
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            cost = str(cost)
        usd = cost if isinstance(cost, str) else None
        result["cost"] = {"usd": usd, "discount": usage.get("discount")}
    return result


def _bounded_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Vtrix's `metadata` as it sent it, if it is small (it rides in every webhook about the
    task); a larger one is replaced by a note of its size."""
    size = len(orjson.dumps(metadata, default=str))
    if size > METADATA_MAX_BYTES:
        return {"omitted": f"{size} bytes of JSON, more than {METADATA_MAX_BYTES}"}
    return dict(metadata)


def _failure(error: Any) -> TaskError:
    code, text = None, None
    if isinstance(error, Mapping):
        code = normalize_code(error.get("code"))
        text = wire.text(error.get("error_message")) or wire.text(error.get("message"))
    else:
        text = wire.text(error)
    message = _message(CODE_MESSAGES.get(code or ""), text) or "Vtrix reported the task failed"
    return task_error("provider_failed", message, provider_code=code)


def _error(
    response: ProviderResponse, body: dict[str, Any] | None, *, query: bool = False
) -> JobhookError:
    """A refusal in any of Vtrix's error shapes as a jobhook error."""
    code, text = _error_fields(body)
    mapped = CODE_MESSAGES.get(code or "")
    message = _message(mapped, text) or f"Vtrix answered HTTP {response.status_code}"
    status = response.status_code
    if 200 <= status < 300:
        # An error in a 2xx body: an HTTP-like code says which; a 004006xxx one is a refusal.
        number = whole_number(code or "")
        http_like = number if number is not None and 400 <= number < 600 else None
        status = http_like or 400
    if status == 429 or code == UNAVAILABLE_CODE or not 400 <= status < 500:
        return wire.unavailable("Vtrix", status, message, response.headers)
    provider_code = code or str(status)
    if status == 401:
        return ProviderRejected(
            "Vtrix rejected the API key", http_status=401, provider_code=provider_code
        )
    if status == 403:
        what = "the task query" if query else "the request"
        return ProviderRejected(
            f"Vtrix refused {what}: insufficient balance or no permission ({message})",
            http_status=403,
            provider_code=provider_code,
        )
    if status == 404 and query:
        message = message if body is not None else "Vtrix has no such task"
        return ProviderRejected(message, http_status=404, provider_code=provider_code)
    if body is None:
        # A 4xx without a JSON body is a proxy's page, not Vtrix's refusal.
        return ProviderUnavailable(f"Vtrix answered HTTP {status} without a JSON body")
    return ProviderRejected(
        message, http_status=status, provider_code=provider_code, field=_CODE_FIELDS.get(code or "")
    )


def _error_fields(body: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(code, message) from `{"error": {...}}`, `{"error": "text"}` or a top-level code."""
    if body is None:
        return None, None
    error = body.get("error")
    if isinstance(error, Mapping):
        text = wire.text(error.get("error_message")) or wire.text(error.get("message"))
        return normalize_code(error.get("code")), text
    text = (
        wire.text(error) or wire.text(body.get("message")) or wire.text(body.get("error_message"))
    )
    return normalize_code(body.get("code")), text or wire.text(body.get("msg"))


def _is_error(body: Mapping[str, Any]) -> bool:
    if body.get("error"):
        return True
    code = normalize_code(body.get("code"))
    return code is not None and code.lower() not in _SUCCESS_CODES


def _message(mapped: str | None, text: str | None) -> str | None:
    if mapped and text and text.casefold() != mapped.casefold():
        return f"{mapped}: {text}"
    return mapped or text


def _unwrap(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The task object itself, or the one inside `{"data": {...}}` / `{"data": [{...}]}`."""
    if body is None or any(key in body for key in (*_ID_KEYS, "status")):
        return body
    data = body.get("data")
    if isinstance(data, list) and data:
        data = data[0]
    return data if isinstance(data, dict) else body


def _task_id(task: Mapping[str, Any] | None) -> str | None:
    for key in _ID_KEYS:
        value = task.get(key) if task is not None else None
        if isinstance(value, bool):
            continue
        if isinstance(value, int) or (isinstance(value, str) and value.strip()):
            return str(value).strip()
    return None
