"""APIMart adapter: jobhook actions to APIMart's Midjourney endpoints, and both of its task shapes
(`/v1/midjourney/{id}` and `/v1/tasks/{id}`) back to Observations. Poll-only: no callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from service.domain.clock import to_iso
from service.domain.models import Observation, Result, empty_result, task_error
from service.domain.numbers import whole_number
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
from service.providers.apimart_params import (
    FIELDS,
    PNG_DATA_PREFIX,
    STANDALONE,
    parent_task_id,
    validate_modal_params,
    validate_params,
)
from service.providers.base import Parent, ProviderRequest, ProviderResponse, Submitted

DEFAULT_BASE_URL: Final = "https://api.apimart.ai"
#: Progress APIMart reports for a task waiting in MODAL (seed 002's state machine).
MODAL_PROGRESS: Final = 15

#: Both documented vocabularies: `/v1/midjourney` (upper case) and `/v1/tasks` (lower case), plus
#: the lower-case `submitted` / `modal` of submit answers. Anything else is not guessed.
STATUS_MAP: Final[Mapping[str, Status]] = {
    "NOT_START": Status.SUBMITTED,
    "SUBMITTED": Status.SUBMITTED,
    "IN_PROGRESS": Status.IN_PROGRESS,
    "MODAL": Status.MODAL,
    "SUCCESS": Status.SUCCESS,
    "FAILURE": Status.FAILURE,
    "CANCEL": Status.CANCEL,
    "pending": Status.SUBMITTED,
    "submitted": Status.SUBMITTED,
    "processing": Status.IN_PROGRESS,
    "modal": Status.MODAL,
    "completed": Status.SUCCESS,
    "failed": Status.FAILURE,
    "cancelled": Status.CANCEL,
}
#: describe's numbered suggestions start with a keycap digit: 1️⃣ is "1", U+FE0F, U+20E3.
_KEYCAP: Final = re.compile(r"(?:^|\n)[ \t]*[0-9]\ufe0f?\u20e3[ \t]*")
#: At most this many prompts are kept of a describe (it writes four).
MAX_PROMPTS: Final = 16
#: An `expires_at` above this is in milliseconds (in seconds it would be past the year 5000).
MILLISECONDS_FROM: Final = 100_000_000_000
#: APIMart's own error codes in a body's `code`.
CODE_VALIDATION: Final = 4
CODE_NOT_FOUND: Final = 3
_MODAL_KEYS: Final = ("task_id", "prompt", "mask_url", "speed", "metadata")
#: The two documented ways to read a task: seed 002 reads every task at `/v1/midjourney/{id}`
#: (buttons, grid, fail_reason); seed 000 says to poll a task after its modal call at
#: `/v1/tasks/{id}`.
MIDJOURNEY_QUERY: Final = "/v1/midjourney/"
TASKS_QUERY: Final = "/v1/tasks/"


def endpoint(action: str) -> str:
    """`high_variation` -> `/v1/midjourney/generations/high-variation`."""
    return "/v1/midjourney/generations/" + action.replace("_", "-")


class ApimartProvider(wire.Adapter):
    """APIMart's Midjourney API (`Authorization: Bearer`); poll-only, with a two-step inpaint."""

    name = "apimart"
    base_url = DEFAULT_BASE_URL
    actions: frozenset[str] = frozenset(FIELDS)
    supports_callbacks = False
    signs_callbacks = False
    poll_interval = 4.0
    #: APIMart answers 403 for another account's task: it will never become ours.
    forbidden_means_lost = True
    idempotent_submit = False

    def __init__(
        self, *, api_key: str, base_url: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(api_key=api_key, base_url=base_url, name=name)
        #: query shapes whose latest answer was a 404: the other one is asked first
        self._unanswered: set[str] = set()

    def validate(
        self, action: str, params: Mapping[str, Any], parent: Parent | None
    ) -> dict[str, Any]:
        if action == "modal":
            raise ValidationFailed(
                "action", "the modal call finishes a MODAL task: POST /v1/tasks/{id}/modal"
            )
        check.action("APIMart", action, self.actions)
        return validate_params(action, params, parent)

    def build_submit(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        parent: Parent | None,
        callback_url: str | None,
        idempotency_key: str | None = None,
    ) -> ProviderRequest:
        # APIMart documents neither callbacks nor an idempotency key: both are left out.
        cleaned = self.validate(action, params, parent)
        body: dict[str, Any] = {}
        if action not in STANDALONE:
            body["task_id"] = parent_task_id(action, cleaned, parent)
        for name, value in cleaned.items():
            if name == "task_id":
                continue
            # jobhook's common name for the aspect ratio is APIMart's `size`.
            body["size" if name == "aspect_ratio" else name] = value
        return self._request("POST", endpoint(action), body)

    def parse_submit(self, response: ProviderResponse) -> Submitted:
        body = wire.json_object(response.body)
        if not _accepted(response, body):
            raise _error(response, body)
        assert body is not None
        item = _first_item(body)
        task_id = _task_id(item)
        if task_id is None:
            if _error_text(body) is not None:
                raise _error(response, body)
            raise ProviderUnavailable("APIMart accepted the request but sent no task_id")
        raw_status = item.get("status")
        detail = None
        if raw_status == "modal":
            status, progress = Status.MODAL, MODAL_PROGRESS
        else:
            status, progress = Status.SUBMITTED, 0
            if raw_status not in ("submitted", "SUBMITTED", "NOT_START", "pending", None):
                # An acceptance is an acceptance; polling tells what the odd status meant.
                detail = f"unexpected APIMart status {raw_status!r} on submit"
        return wire.accepted(task_id, status=status, raw=body, detail=detail, progress=progress)

    def build_query(self, provider_task_id: str) -> ProviderRequest:
        # The midjourney shape carries buttons, the grid and fail_reason; /v1/tasks does not.
        return self.query_requests(provider_task_id, after_modal=False)[0]

    def query_requests(self, provider_task_id: str, *, after_modal: bool) -> list[ProviderRequest]:
        """Both shapes, the documented one for this task first (`/v1/tasks` after the modal
        call, else `/v1/midjourney`) unless its latest answer was a 404 and the other's not."""
        shapes = [TASKS_QUERY, MIDJOURNEY_QUERY] if after_modal else [MIDJOURNEY_QUERY, TASKS_QUERY]
        if shapes[0] in self._unanswered and shapes[1] not in self._unanswered:
            shapes.reverse()
        # Quoted: the id came off the wire and must not steer the request to another path.
        quoted = quote(provider_task_id, safe="")
        return [self._request("GET", shape + quoted, None) for shape in shapes]

    def query_answered(self, request: ProviderRequest, *, found: bool) -> None:
        shape = TASKS_QUERY if request.path.startswith(TASKS_QUERY) else MIDJOURNEY_QUERY
        if found:
            self._unanswered.discard(shape)
        else:
            self._unanswered.add(shape)

    def parse_query(self, response: ProviderResponse) -> Observation:
        body = wire.json_object(response.body)
        code = _code(body)
        text = _error_text(body)
        if response.status_code == 403 or code == 403:
            message = "the task belongs to another APIMart account"
            raise ProviderRejected(
                f"{message}: {text}" if text else message, http_status=403, provider_code="403"
            )
        if response.status_code == 404 or code in (CODE_NOT_FOUND, 404):
            message = "APIMart does not know this task (it keeps tasks for 3 days)"
            raise ProviderRejected(
                f"{message}: {text}" if text else message,
                http_status=404,
                provider_code=str(code if code is not None else 404),
            )
        if not _accepted(response, body):
            raise _error(response, body)
        assert body is not None
        data = body.get("data")
        task = data if "code" in body and isinstance(data, Mapping) else body
        task_id = _task_id(task)
        if task_id is None:
            raise ProviderUnavailable("APIMart answered a task query with an unreadable body")
        return _observation(task, task_id, raw=body)

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        # Nothing to verify: APIMart sends no callbacks, so nothing is trusted from one either.
        return True

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        raise MalformedCallback("APIMart sends no callbacks")

    def validate_modal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return validate_modal_params(params)

    def build_modal(self, provider_task_id: str, params: Mapping[str, Any]) -> ProviderRequest:
        # The params come validated (validate_modal): here they are only spelled APIMart's way.
        cleaned = dict(params)
        if "mask" in cleaned:
            # APIMart takes a base64 mask in mask_url as a data: URL.
            cleaned["mask_url"] = PNG_DATA_PREFIX + cleaned.pop("mask")
        body = {"task_id": provider_task_id, **cleaned}
        ordered = {key: body[key] for key in _MODAL_KEYS if key in body}
        return self._request("POST", endpoint("modal"), ordered)

    def parse_modal(self, response: ProviderResponse) -> Observation:
        body = wire.json_object(response.body)
        if not _accepted(response, body):
            raise _error(response, body)
        assert body is not None
        task_id = _task_id(_first_item(body))
        if task_id is None:
            raise ProviderUnavailable("APIMart accepted the modal call but sent no task_id")
        return Observation(
            status=Status.SUBMITTED,
            source="api",
            provider_task_id=task_id,
            dedupe_key=f"modal:{task_id}",
            raw=body,
            modal_call=True,
        )

    def _request(self, method: str, path: str, body: Any) -> ProviderRequest:
        return wire.request(method, path, body, auth={"Authorization": f"Bearer {self._api_key}"})


def _observation(task: Mapping[str, Any], task_id: str, *, raw: Any) -> Observation:
    """One task in either shape: the midjourney one (flat) or the unified one (`result`)."""
    raw_status = task.get("status")
    status = STATUS_MAP.get(raw_status) if isinstance(raw_status, str) else None
    error = None
    if status is Status.FAILURE:
        message = wire.text(task.get("fail_reason")) or _error_text(task)
        nested = task.get("error")
        code = nested.get("code") if isinstance(nested, Mapping) else None
        error = task_error(
            "provider_failed",
            message or "APIMart reported the task failed",
            provider_code=code
            if isinstance(code, str | int) and not isinstance(code, bool)
            else None,
        )
    return Observation(
        status=status,
        source="poll",
        progress=_progress(task.get("progress")),
        result=_result(task),
        error=error,
        provider_task_id=task_id,
        raw=raw,
        detail=None if status else f"unknown APIMart status {raw_status!r}",
    )


def _result(task: Mapping[str, Any]) -> Result | None:
    """Images, grid, videos, buttons, describe's prompts and the URLs' expiry from whichever
    shape; None when there is none of them."""
    nested = task.get("result")
    inner: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    images = _urls(task.get("image_urls"), inner.get("images"), inner.get("image_urls"))
    videos = _urls(
        task.get("video_urls"),
        task.get("video_url"),
        inner.get("videos"),
        inner.get("video_urls"),
        inner.get("video_url"),
    )
    grid = wire.text(task.get("grid_image_url")) or wire.text(inner.get("grid_image_url"))
    actions = []
    for button in _list(task.get("buttons")):
        if isinstance(button, Mapping) and wire.text(button.get("customId")):
            actions.append({"label": button.get("label"), "custom_id": button["customId"]})
    prompts = describe_prompts(_describe_text(task, inner))
    expires_at = _expires_at(
        item.get("expires_at")
        for key in ("images", "videos")
        for item in _list(inner.get(key))
        if isinstance(item, Mapping)
    )
    if not (images or videos or grid or actions or prompts or expires_at):
        return None
    result = empty_result()
    result["images"], result["videos"] = images, videos
    result["grid_url"], result["actions"] = grid, actions
    result["prompts"], result["expires_at"] = prompts, expires_at
    return result


def _describe_text(task: Mapping[str, Any], inner: Mapping[str, Any]) -> str | None:
    """describe's answer: "The text result is in prompt / description of the query result"
    (docs.apimart.ai .../midjourney/describe). `prompt` is only read on a DESCRIBE task (on any
    other it is the client's prompt); `description` also on a task of no named action (the
    `/v1/tasks` shape names none), never on another action's."""
    action = task.get("action")
    if action == "DESCRIBE":
        return wire.text(task.get("description")) or wire.text(task.get("prompt"))
    if action is None:
        return wire.text(task.get("description")) or wire.text(inner.get("description"))
    return None


def describe_prompts(text: str | None) -> list[str]:
    """describe's text as its prompts: "four numbered suggestions, separated by \\n and
    prefixed with the digit emoji 1️⃣2️⃣3️⃣4️⃣" (docs.apimart.ai .../midjourney/describe). Text
    without those marks is kept whole, as one prompt."""
    if text is None:
        return []
    prompts = [part.strip() for part in _KEYCAP.split(text)]
    return [prompt for prompt in prompts if prompt][:MAX_PROMPTS]


def _expires_at(stamps: Iterable[Any]) -> str | None:
    """The earliest `expires_at` (Unix seconds, as in examples/apimart.tasks.completed.json) as
    RFC 3339; a value in milliseconds is read as such; anything else is not guessed at."""
    moments = []
    for stamp in stamps:
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            continue
        seconds = stamp / 1000 if stamp > MILLISECONDS_FROM else stamp
        try:
            moments.append(datetime.fromtimestamp(seconds, UTC))
        except (OverflowError, OSError, ValueError):
            continue
    return to_iso(min(moments)) if moments else None


def _urls(*values: Any) -> list[str]:
    """URLs from strings, lists and `{url: string | list}` objects, in order, without repeats."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value and value not in found:
                found.append(value)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, Mapping):
            walk(value.get("url"))

    for value in values:
        walk(value)
    return found


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _progress(value: Any) -> int | None:
    """`"42%"` (midjourney shape) or 42 (unified shape), clamped to 0..100."""
    return wire.progress(value.strip().removesuffix("%") if isinstance(value, str) else value)


def _accepted(response: ProviderResponse, body: Mapping[str, Any] | None) -> bool:
    code = _code(body)
    return 200 <= response.status_code < 300 and body is not None and code in (None, 200)


def _first_item(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Submit answers come wrapped (`{"code":200,"data":[{...}]}`) or bare (`{task_id,...}`)."""
    data = body.get("data")
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return data[0]
    if isinstance(data, Mapping):
        return data
    return body


def _task_id(item: Mapping[str, Any]) -> str | None:
    value = item.get("task_id") or item.get("id")
    return value if isinstance(value, str) and value else None


def _error(response: ProviderResponse, body: Mapping[str, Any] | None) -> JobhookError:
    """APIMart refusals as jobhook errors: `code` 4 invalid, 3 unknown; 429, 5xx, garbage later."""
    status = response.status_code
    code = _code(body)
    text = _error_text(body) or f"APIMart answered HTTP {status}"
    provider_code = str(code) if code is not None else None
    if status == 429 or code == 429:
        # A 429 in the body's `code` is the same rate limit as one in the HTTP status.
        return wire.unavailable("APIMart", 429, text, response.headers)
    if body is None or status >= 500 or (code is not None and code >= 500):
        return wire.unavailable("APIMart", status, text, response.headers)
    is_4xx = 400 <= status < 500
    if code == CODE_VALIDATION:
        return ProviderRejected(text, http_status=status if is_4xx else 400, provider_code="4")
    if code == CODE_NOT_FOUND:
        return ProviderRejected(text, http_status=status if is_4xx else 404, provider_code="3")
    if is_4xx:
        return ProviderRejected(
            text, http_status=status, provider_code=provider_code or str(status)
        )
    if code is not None and 400 <= code < 500:
        return ProviderRejected(text, http_status=code, provider_code=provider_code)
    # A 2xx carrying an unknown error code: refused, but not the client's fault (502).
    return ProviderRejected(text, http_status=status, provider_code=provider_code)


def _code(body: Mapping[str, Any] | None) -> int | None:
    value = body.get("code") if body is not None else None
    if isinstance(value, str):
        return whole_number(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_text(body: Mapping[str, Any] | None) -> str | None:
    """`msg`, `message` or `error` (a string, or an object with a `message`)."""
    if body is None:
        return None
    for key in ("msg", "message", "error"):
        value = body.get(key)
        if isinstance(value, Mapping):
            value = value.get("message") or value.get("msg")
        if text := wire.text(value):
            return text
    return None
