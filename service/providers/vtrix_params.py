"""Vtrix's Midjourney follow-ups (inpaint, edits, remix, uploadpaint): the jobhook params each one
takes, checked and cleaned before anything is sent. Field names are jobhook's; `vtrix.py` spells
them the Vtrix way on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from service.errors import ValidationFailed
from service.providers.base import Parent

#: jobhook action -> Vtrix model.
MODELS: Final[Mapping[str, str]] = {
    "inpaint": "midjourney_inpaint",
    "edits": "midjourney_edit",
    "remix": "midjourney_remix",
    "uploadpaint": "midjourney_uploadpaint",
}
PROMPT_MAX_CHARS: Final = 8192
AREA_MIN: Final = 500
AREA_MAX: Final = 4096
#: "at least 6 coordinate values (3 points)".
AREA_MIN_POINTS: Final = 6

# Only midjourney_inpaint has a published page. Its siblings get the same fields (parent, image,
# prompt, mask) and nothing more: an undocumented field would be a guess at Vtrix's spelling.
_COMMON: Final = frozenset({"job_id", "index", "prompt"})
_MASKS: Final = frozenset({"mask_url", "mask_areas"})
_PARAMS: Final[Mapping[str, frozenset[str]]] = {
    "inpaint": _COMMON | _MASKS,
    "edits": _COMMON | _MASKS,
    "remix": _COMMON,
    "uploadpaint": _COMMON | _MASKS,
}
_PROMPT_REQUIRED: Final = frozenset({"inpaint", "remix"})
_MASK_REQUIRED: Final = frozenset({"inpaint", "uploadpaint"})
_AREA_KEYS: Final = frozenset({"width", "height", "points"})


def validate(action: str, params: Mapping[str, Any], parent: Parent | None) -> dict[str, Any]:
    """The cleaned params of one Vtrix follow-up; raises ValidationFailed naming the field.

    Idempotent: cleaned params validate again to themselves (build_submit re-checks them).
    """
    if action not in MODELS:
        supported = ", ".join(sorted(MODELS))
        raise ValidationFailed("action", f"Vtrix does not do {action!r} (it does {supported})")
    if "mask" in params:
        raise ValidationFailed("params.mask", "Vtrix takes mask_url or mask_areas")
    for name in params:
        if name not in _PARAMS[action]:
            raise ValidationFailed(f"params.{name}", f"not a parameter of {action} on Vtrix")
    cleaned: dict[str, Any] = {}
    job_id = parent_job_id(action, params, parent)
    if "job_id" in params:
        cleaned["job_id"] = job_id
    cleaned["index"] = _index(params.get("index"))
    prompt = _prompt(params.get("prompt"), required=action in _PROMPT_REQUIRED)
    if prompt is not None:
        cleaned["prompt"] = prompt
    mask_url, areas = params.get("mask_url"), params.get("mask_areas")
    if mask_url is not None and areas is not None:
        raise ValidationFailed("params.mask_url", "give mask_url or mask_areas, not both")
    if mask_url is not None:
        cleaned["mask_url"] = _mask_url(mask_url)
    elif areas is not None:
        cleaned["mask_areas"] = _mask_areas(areas)
    elif action in _MASK_REQUIRED:
        raise ValidationFailed("params.mask_url", f"{action} on Vtrix needs mask_url or mask_areas")
    return cleaned


def parent_job_id(action: str, params: Mapping[str, Any], parent: Parent | None) -> str:
    """Vtrix's `jobId`: the jobhook parent's provider task id, or `params.job_id` for a
    Midjourney job made outside jobhook."""
    given = params.get("job_id")
    if given is not None and (not isinstance(given, str) or not given.strip()):
        raise ValidationFailed("params.job_id", "must be Vtrix's job id, a string")
    if parent is not None:
        if given is not None and given.strip() != parent.provider_task_id:
            raise ValidationFailed("params.job_id", "names another job than parent_id")
        return parent.provider_task_id
    if given is None:
        raise ValidationFailed(
            "parent_id", f"{action} needs parent_id, or params.job_id for a Vtrix Midjourney job"
        )
    return str(given).strip()


def _index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ValidationFailed("params.index", "is required: a whole number from 1 to 4")
    return value


def _prompt(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("params.prompt", "is required and must be a string")
    text = value.strip()
    if required and not text:
        raise ValidationFailed("params.prompt", "must not be empty")
    if len(text) > PROMPT_MAX_CHARS:
        raise ValidationFailed("params.prompt", f"must be at most {PROMPT_MAX_CHARS} characters")
    return text or None


def _mask_url(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text) if text and not any(c.isspace() for c in text) else None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("params.mask_url", "must be an http(s) URL")
    return text


def _mask_areas(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed("params.mask_areas", "must be a non-empty list of areas")
    return [_area(n, area) for n, area in enumerate(value)]


def _area(n: int, area: Any) -> dict[str, Any]:
    field = f"params.mask_areas[{n}]"
    if not isinstance(area, Mapping):
        raise ValidationFailed(field, "must be an object {width, height, points}")
    for key in area:
        if key not in _AREA_KEYS:
            raise ValidationFailed(f"{field}.{key}", "not a field of a mask area")
    sides: dict[str, int] = {}
    for side in ("width", "height"):
        size = area.get(side)
        if isinstance(size, bool) or not isinstance(size, int) or not AREA_MIN <= size <= AREA_MAX:
            raise ValidationFailed(
                f"{field}.{side}", f"must be a whole number from {AREA_MIN} to {AREA_MAX}"
            )
        sides[side] = size
    points = area.get("points")
    if (
        not isinstance(points, list)
        or len(points) < AREA_MIN_POINTS
        or not all(_is_number(point) for point in points)
    ):
        raise ValidationFailed(
            f"{field}.points", f"must be a list of at least {AREA_MIN_POINTS} numbers"
        )
    return {**sides, "points": list(points)}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)
