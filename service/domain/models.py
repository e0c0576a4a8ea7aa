"""Domain values: what a provider said (Observation), result and error shapes, names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from service.domain.status import Status

Source = Literal["callback", "poll", "api", "timer"]
Outcome = Literal["applied", "duplicate", "stale", "conflict", "rejected"]

#: jobhook's action names; each provider maps the ones it supports to its own endpoints.
ACTIONS = (
    "imagine",
    "upscale",
    "variation",
    "high_variation",
    "low_variation",
    "reroll",
    "zoom",
    "pan",
    "inpaint",
    "modal",
    "video",
    "blend",
    "describe",
    "edits",
    "remix",
    "uploadpaint",
)

EVENT_TYPES = (
    "task.submitted",
    "task.progress",
    "task.modal",
    "task.succeeded",
    "task.failed",
    "task.cancelled",
)
DEFAULT_CALLBACK_EVENTS = ("task.modal", "task.succeeded", "task.failed", "task.cancelled")

#: Largest raw provider payload kept with an event, in characters of JSON.
RAW_LIMIT = 8192

#: A modal call's claim lasts this long (longer than the provider request may take); while it
#: lasts, the MODAL timer yields to the call (service/domain/status.py `decide`).
MODAL_CALL_LEASE = 60.0


class Result(TypedDict, total=False):
    """What a task produced, as the task view, the webhooks and the OpenAPI schema show it."""

    images: list[str]
    grid_url: str | None
    videos: list[str]
    #: the provider's buttons for follow-ups (APIMart: `{label, custom_id}`)
    actions: list[dict[str, Any]]
    #: what the provider billed: Apiframe `{credits}`, Vtrix `{usd, discount}` (its `usage`)
    cost: dict[str, Any] | None
    #: describe's suggestions, one prompt each (APIMart: the 1️⃣..4️⃣ lines of its text)
    prompts: list[str]
    #: when the result URLs stop working (RFC 3339), where the provider says so
    expires_at: str | None
    #: the provider's own `metadata` of the task (Vtrix), as it sent it
    provider_metadata: dict[str, Any] | None


class TaskError(TypedDict):
    code: str
    message: str
    provider_code: str | None


def empty_result() -> Result:
    return {
        "images": [],
        "grid_url": None,
        "videos": [],
        "actions": [],
        "cost": None,
        "prompts": [],
        "expires_at": None,
        "provider_metadata": None,
    }


def task_error(code: str, message: str, provider_code: str | int | None = None) -> TaskError:
    return {
        "code": code,
        "message": message,
        "provider_code": None if provider_code is None else str(provider_code),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What a provider (or the API, or a timer) said about a task, normalised.

    `status` is None when the provider said something jobhook does not understand; such an
    observation is recorded as `rejected`, never guessed.
    """

    status: Status | None
    source: Source
    progress: int | None = None
    result: Result | None = None
    error: TaskError | None = None
    provider_task_id: str | None = None
    dedupe_key: str | None = None
    raw: Any = None
    detail: str | None = None
    #: True only for the client's modal call, the one move that takes MODAL back to SUBMITTED.
    modal_call: bool = False
    #: params the task gains when this observation applies (the modal call's prompt and mask)
    params_patch: dict[str, Any] | None = None
    #: what else the provider said that is not the task's result (Apiframe's webhook `event`,
    #: `expired`): the planner keeps it in the event's `detail.provider`
    extra: dict[str, Any] = field(default_factory=dict)
