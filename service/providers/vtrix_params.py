"""Vtrix's Midjourney follow-ups (inpaint, edits, remix, uploadpaint): the jobhook params each one
takes, checked and cleaned before anything is sent. Field names are jobhook's; `vtrix.py` spells
them the Vtrix way on the wire.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from service.errors import ValidationFailed
from service.providers import params as check
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
#: "at least 6 coordinate values (3 points)" (seed 003): x, y pairs.
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
_MASK_REQUIRED: Final = frozenset({"inpaint", "uploadpaint"})
_AREA_KEYS: Final = frozenset({"width", "height", "points"})


def validate(action: str, params: Mapping[str, Any], parent: Parent | None) -> dict[str, Any]:
    """The cleaned params of one Vtrix follow-up; raises ValidationFailed naming the field.

    Idempotent: cleaned params validate again to themselves (build_submit re-checks them).
    """
    check.action("Vtrix", action, MODELS)
    if "mask" in params:
        raise ValidationFailed("params.mask", "Vtrix takes mask_url or mask_areas")
    for name in params:
        if name not in _PARAMS[action]:
            raise ValidationFailed(f"params.{name}", f"not a parameter of {action} on Vtrix")
    cleaned: dict[str, Any] = {}
    job_id = parent_job_id(action, params, parent)
    if "job_id" in params:
        cleaned["job_id"] = job_id
    cleaned["index"] = check.whole(
        "params.index", params.get("index"), 1, 4, wording="is required:"
    )
    # remixPrompt is optional ("length must be between 1-8192 characters" when given; seed
    # 003 marks model, jobId, imageNo and mask required, not it): a blank one is left out.
    prompt = check.prompt(params.get("prompt"), required=False, max_chars=PROMPT_MAX_CHARS)
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
    return check.parent_job_id(
        action, params, parent, key="job_id", provider="Vtrix", job="a Vtrix Midjourney job"
    )


def _mask_url(value: Any) -> str:
    message = "must be an http(s) URL"
    # Stricter than the shared check: a URL with a blank inside is refused, not passed on.
    if isinstance(value, str) and any(c.isspace() for c in value.strip()):
        raise ValidationFailed("params.mask_url", message)
    return check.http_url("params.mask_url", value, message=message)


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
        sides[side] = check.whole(f"{field}.{side}", area.get(side), AREA_MIN, AREA_MAX)
    points = area.get("points")
    if (
        not isinstance(points, list)
        or len(points) < AREA_MIN_POINTS
        or not all(_is_number(point) for point in points)
    ):
        raise ValidationFailed(
            f"{field}.points", f"must be a list of at least {AREA_MIN_POINTS} numbers"
        )
    # "coordinate values (3 points)": x, y pairs, so an odd count is half a point short.
    if len(points) % 2:
        raise ValidationFailed(f"{field}.points", "must be x, y pairs: an even count of numbers")
    return {**sides, "points": list(points)}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)
