"""APIMart's documented request fields, checked before anything is sent: one checker per field,
the field sets per action, the parent rules, and the modal call's mask.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from service.errors import ValidationFailed
from service.providers import params as check
from service.providers.base import Parent

#: Masks (and images) APIMart takes are at most 12 MiB each ("≤ 12 MiB per image", seed 000;
#: image_urls "≤ 12 MiB" on docs.apimart.ai .../midjourney/{blend,describe,video}).
MASK_MAX_BYTES: Final = 12 * 1024 * 1024
IMAGE_MAX_BYTES: Final = MASK_MAX_BYTES
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
PNG_DATA_PREFIX: Final = "data:image/png;base64,"
#: Inline images in image_urls ("Image URLs or base64", docs.apimart.ai .../midjourney/imagine):
#: the types Midjourney reads, each known by its first bytes, so the type named is the type sent.
IMAGE_SIGNATURES: Final[Mapping[str, tuple[bytes, ...]]] = {
    "png": (PNG_SIGNATURE,),
    "jpeg": (b"\xff\xd8\xff",),
    "webp": (b"RIFF",),
    "gif": (b"GIF87a", b"GIF89a"),
}
_DATA_URL_RE: Final = re.compile(r"data:image/([a-z]+);base64,", re.IGNORECASE)
SPEEDS: Final = frozenset({"relax", "fast", "turbo"})
QUALITIES: Final = ("0.25", "0.5", "1", "2")
DIMENSIONS: Final = frozenset({"SQUARE", "PORTRAIT", "LANDSCAPE"})
#: Midjourney's seed range.
SEED_MAX: Final = 4_294_967_295
#: "vid_1.1_i2v_480 | _720 | _start_end_480 | _start_end_720" (docs.apimart.ai
#: .../midjourney/video: "only the video_type values listed above are supported").
_VIDEO_TYPE_RE: Final = re.compile(r"vid_\d+\.\d+_i2v_(start_end_)?(480|720)")
#: A reference given by code, not URL: a style number, `random`, a code with its `::weight`.
_REF_CODE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

Check = Callable[[str, Any], Any]


def _name(field: str) -> str:
    return f"params.{field}"


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(_name(field), "must be a non-empty string")
    return value.strip()


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(_name(field), "must be true or false")
    return value


def _object(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed(_name(field), "must be an object")
    return value


def _speed(field: str, value: Any) -> str:
    speed = value.strip().lower() if isinstance(value, str) else None
    if speed not in SPEEDS:
        raise ValidationFailed(_name(field), "must be relax, fast or turbo")
    return speed


def _whole(low: int, high: int) -> Check:
    def whole(field: str, value: Any) -> int:
        return check.whole(_name(field), value, low, high)

    return whole


def _number(low: float, high: float, *, above_low: bool = False) -> Check:
    def bounded(field: str, value: Any) -> float:
        number = (
            float(value)
            if isinstance(value, int | float) and not isinstance(value, bool)
            else math.nan
        )
        in_range = number > low if above_low else number >= low
        if not (math.isfinite(number) and in_range and number <= high):
            bound = "above" if above_low else "from"
            raise ValidationFailed(_name(field), f"must be a number {bound} {low:g} to {high:g}")
        return number

    return bounded


def _aspect_ratio(field: str, value: Any) -> str:
    return check.aspect_ratio(_name(field), value, example=", e.g. 16:9")


def _quality(field: str, value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{value:g}"
    if not isinstance(value, str) or value.strip() not in QUALITIES:
        raise ValidationFailed(_name(field), f"must be one of {', '.join(QUALITIES)}")
    return value.strip()


def _niji(field: str, value: Any) -> str | bool:
    if isinstance(value, bool):
        return value
    return _text(field, value)


def _refs(field: str, value: Any) -> str | list[str]:
    """Reference images (`cref`, `sref`): each a public http(s) URL, or a Midjourney code such
    as a style's number (`sref 1234567`, `random`); the URLs go through the outbound guard."""
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > check.MAX_ITEMS:
        raise ValidationFailed(
            _name(field), f"must be a reference or a list of 1 to {check.MAX_ITEMS}"
        )
    cleaned = [
        _ref(f"{_name(field)}[{n}]" if isinstance(value, list) else _name(field), item)
        for n, item in enumerate(items)
    ]
    return cleaned if isinstance(value, list) else cleaned[0]


def _ref(field: str, value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if "://" in text:
        return check.http_url(field, text)
    if not _REF_CODE_RE.fullmatch(text):
        raise ValidationFailed(
            field, "must be an http(s) URL or a reference code (letters, digits)"
        )
    return text


def _task_id(field: str, value: Any) -> str:
    return check.provider_id(_name(field), value, what="an APIMart task id")


def _direction(field: str, value: Any) -> str:
    # "direction: left / right / up / down" (docs.apimart.ai .../midjourney/pan).
    return check.direction(_name(field), value)


def _video_type(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _VIDEO_TYPE_RE.fullmatch(value.strip()):
        raise ValidationFailed(
            _name(field),
            "must be vid_1.1_i2v_480, vid_1.1_i2v_720, vid_1.1_i2v_start_end_480 or "
            "vid_1.1_i2v_start_end_720",
        )
    return value.strip()


def _batch_size(field: str, value: Any) -> int:
    # "batch_size: Must be 1 / 2 / 4, other values treated as 1; billed x N" (docs.apimart.ai
    # .../midjourney/video): refused instead of silently becoming 1.
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2, 4):
        raise ValidationFailed(_name(field), "must be 1, 2 or 4")
    return value


def _motion(field: str, value: Any) -> str:
    # "motion: low / high; motion amount, no billing impact" (docs.apimart.ai .../video).
    if value not in ("low", "high"):
        raise ValidationFailed(_name(field), "must be low or high")
    return str(value)


def _dimensions(field: str, value: Any) -> str:
    # "dimensions: SQUARE (1:1) / PORTRAIT (2:3) / LANDSCAPE (3:2)" (docs.apimart.ai
    # .../midjourney/blend).
    dimensions = value.strip().upper() if isinstance(value, str) else None
    if dimensions not in DIMENSIONS:
        raise ValidationFailed(_name(field), "must be SQUARE, PORTRAIT or LANDSCAPE")
    return dimensions


def _url(field: str, value: Any) -> str:
    return check.http_url(_name(field), value)


def _urls(low: int, high: int | None) -> Check:
    """image_urls: each an http(s) URL, or an image inline as a base64 `data:` URL."""
    if high is None:
        count = "" if low == 0 else f"at least {low} "
    else:
        count = f"exactly {low} " if low == high else f"{low} to {high} "
    message = f"must be a list of {count}http(s) URLs or data:image/...;base64, images"

    def urls(field: str, value: Any) -> list[str]:
        if not isinstance(value, list) or len(value) < low or (high and len(value) > high):
            raise ValidationFailed(_name(field), message)
        return [_image(f"{_name(field)}[{n}]", url) for n, url in enumerate(value)]

    return urls


def _image(field: str, value: Any) -> str:
    if isinstance(value, str) and value.lstrip()[:5].lower() == "data:":
        return image_base64(field, value)
    return check.http_url(field, value)


def image_base64(field: str, value: str) -> str:
    """An inline image as APIMart takes it: `data:image/<png|jpeg|webp|gif>;base64,<payload>`
    of at most 12 MiB whose bytes are the type it names. Whitespace is dropped; the messages
    never quote the value."""
    text = "".join(value.split())
    match = _DATA_URL_RE.match(text)
    kind = match.group(1).lower() if match else ""
    kind = "jpeg" if kind == "jpg" else kind
    if match is None or kind not in IMAGE_SIGNATURES:
        raise ValidationFailed(
            field, "an inline image must be data:image/(png|jpeg|webp|gif);base64,..."
        )
    payload = text[match.end() :]
    decoded = check.base64_payload(field, payload, max_bytes=IMAGE_MAX_BYTES)
    if not decoded or len(decoded) > IMAGE_MAX_BYTES:
        raise ValidationFailed(field, "must decode to 1 byte .. 12 MiB")
    if not decoded.startswith(IMAGE_SIGNATURES[kind]) or (
        kind == "webp" and decoded[8:12] != b"WEBP"
    ):
        raise ValidationFailed(field, f"is not a {kind.upper()} image (its first bytes say so)")
    return f"data:image/{kind};base64,{payload}"


_common: dict[str, Check] = {"speed": _speed, "metadata": _object}
_shape: dict[str, Check] = {
    "size": _aspect_ratio,
    "aspect_ratio": _aspect_ratio,
    "quality": _quality,
    "style": _text,
    "version": _text,
    "seed": _whole(0, SEED_MAX),
    "negative_prompt": _text,
    "stylize": _whole(0, 1000),
    "chaos": _whole(0, 100),
    "weird": _whole(0, 3000),
    "tile": _bool,
    "niji": _niji,
    "iw": _number(0, 3),
    "cw": _whole(0, 100),
    "sw": _whole(0, 1000),
    "cref": _refs,
    "sref": _refs,
    "dref": _url,
    "dw": _number(0, 100),
    "repeat": _whole(2, 40),
    "raw": _bool,
    "draft": _bool,
}
_follow: dict[str, Check] = {
    **_common,
    "task_id": _task_id,
    "index": _whole(1, 4),
    "custom_id": _text,
}

#: Every field each action takes, with its checker. Anything else is refused.
FIELDS: Final[Mapping[str, Mapping[str, Check]]] = {
    "imagine": {**_common, **_shape, "prompt": _text, "image_urls": _urls(0, None)},
    "edits": {**_common, **_shape, "prompt": _text, "image_urls": _urls(1, None)},
    "blend": {
        **_common,
        "image_urls": _urls(2, 4),
        "dimensions": _dimensions,
        "size": _aspect_ratio,
        "aspect_ratio": _aspect_ratio,
    },
    "describe": {**_common, "image_urls": _urls(1, 1)},
    "video": {
        "metadata": _object,
        "prompt": _text,
        "image_urls": _urls(1, 1),
        "video_type": _video_type,
        "batch_size": _batch_size,
        "end_url": _url,
        "motion": _motion,
    },
    "upscale": _follow,
    "variation": _follow,
    "high_variation": _follow,
    "low_variation": _follow,
    "reroll": _follow,
    "zoom": {**_follow, "zoom_ratio": _number(1.0, 2.0, above_low=True)},
    "pan": {**_follow, "direction": _direction},
    "inpaint": _follow,
}
REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "imagine": ("prompt",),
    "edits": ("prompt", "image_urls"),
    "blend": ("image_urls",),
    "describe": ("image_urls",),
    "video": ("image_urls",),
}
#: Follow-ups that name one image of the parent: `index`, unless a button's custom_id says it.
NEEDS_INDEX: Final = frozenset({"upscale", "variation", "high_variation", "low_variation"})
#: Follow-up fields a button's custom_id stands in for.
_BUTTON_FIELDS: Final = {"zoom": "zoom_ratio", "pan": "direction"}
STANDALONE: Final = frozenset({"imagine", "edits", "blend", "describe", "video"})


def validate_params(
    action: str, params: Mapping[str, Any], parent: Parent | None
) -> dict[str, Any]:
    """The cleaned params of one APIMart action; raises ValidationFailed naming the field."""
    fields = FIELDS[action]
    for name in params:
        if name not in fields:
            raise ValidationFailed(_name(name), f"not a parameter of {action} on APIMart")
    cleaned = {name: fields[name](name, value) for name, value in params.items()}
    if "size" in cleaned and "aspect_ratio" in cleaned:
        raise ValidationFailed("params.aspect_ratio", "give aspect_ratio or size, not both")
    for name in REQUIRED.get(action, ()):
        if name not in cleaned:
            raise ValidationFailed(_name(name), f"is required for {action}")
    if action == "imagine" and cleaned.get("image_urls") == []:
        del cleaned["image_urls"]
    if action in STANDALONE:
        if parent is not None:
            raise ValidationFailed("parent_id", f"{action} takes no parent on APIMart")
        return cleaned

    parent_task_id(action, cleaned, parent)
    by_button = "custom_id" in cleaned
    if action in NEEDS_INDEX and "index" not in cleaned and not by_button:
        raise ValidationFailed("params.index", f"{action} needs index 1..4 (or a custom_id)")
    needed = _BUTTON_FIELDS.get(action)
    if needed is not None and needed not in cleaned and not by_button:
        raise ValidationFailed(_name(needed), f"is required for {action}")
    if action == "inpaint" and parent is not None and parent.action != "upscale":
        raise ValidationFailed(
            "parent_id", "APIMart inpaints a single upscaled image; upscale first"
        )
    return cleaned


def parent_task_id(action: str, params: Mapping[str, Any], parent: Parent | None) -> str:
    """APIMart's task id of a follow-up's parent: jobhook's parent, or `params.task_id`."""
    given = params.get("task_id")
    if parent is not None:
        if given is not None and given != parent.provider_task_id:
            raise ValidationFailed("params.task_id", "names another task than parent_id")
        return parent.provider_task_id
    if not isinstance(given, str) or not given:
        raise ValidationFailed(
            "parent_id", f"{action} needs parent_id, or params.task_id for an APIMart task"
        )
    return given


MODAL_FIELDS: Final = frozenset({"prompt", "mask_url", "mask", "speed", "metadata"})


def validate_modal_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """`{prompt?, mask_url | mask, speed?, metadata?}`; without a mask APIMart outpaints."""
    for name in params:
        if name not in MODAL_FIELDS:
            raise ValidationFailed(_name(name), "not a parameter of the modal call on APIMart")
    cleaned: dict[str, Any] = {}
    if params.get("prompt") is not None:
        if not isinstance(params["prompt"], str):
            raise ValidationFailed("params.prompt", "must be a string")
        if prompt := params["prompt"].strip():
            cleaned["prompt"] = prompt
    if params.get("mask_url") is not None and params.get("mask") is not None:
        raise ValidationFailed("params.mask", "give mask_url or mask, not both")
    if params.get("mask_url") is not None:
        cleaned["mask_url"] = _mask_url(params["mask_url"])
    if params.get("mask") is not None:
        cleaned["mask"] = png_base64("params.mask", params["mask"])
    if params.get("speed") is not None:
        cleaned["speed"] = _speed("speed", params["speed"])
    if params.get("metadata") is not None:
        cleaned["metadata"] = _object("metadata", params["metadata"])
    return cleaned


def _mask_url(value: Any) -> str:
    if isinstance(value, str) and value.strip().startswith("data:"):
        return PNG_DATA_PREFIX + png_base64("params.mask_url", value)
    return check.http_url("params.mask_url", value)


def png_base64(field: str, value: Any) -> str:
    """The bare base64 payload of a PNG of at most 12 MiB (a data:image/png prefix allowed)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(field, "must be a base64 PNG (data:image/png;base64, allowed)")
    text = "".join(value.split())
    if text.startswith("data:"):
        if not text.startswith(PNG_DATA_PREFIX):
            raise ValidationFailed(field, "must be a PNG: only data:image/png;base64, is allowed")
        text = text[len(PNG_DATA_PREFIX) :]
    decoded = check.base64_payload(field, text, max_bytes=MASK_MAX_BYTES)
    if len(decoded) > MASK_MAX_BYTES:
        raise ValidationFailed(field, "must decode to at most 12 MiB")
    if not decoded.startswith(PNG_SIGNATURE):
        raise ValidationFailed(field, "must be a PNG image (no PNG signature)")
    return text
