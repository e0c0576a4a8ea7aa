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


class Result(TypedDict, total=False):
    images: list[str]
    grid_url: str | None
    videos: list[str]
    actions: list[dict[str, Any]]
    cost: dict[str, Any] | None


class TaskError(TypedDict):
    code: str
    message: str
    provider_code: str | None


def empty_result() -> Result:
    return {"images": [], "grid_url": None, "videos": [], "actions": [], "cost": None}


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
    extra: dict[str, Any] = field(default_factory=dict)
