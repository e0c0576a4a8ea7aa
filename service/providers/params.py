"""Parameter checks more than one provider adapter makes. Each takes the full field name and
raises `ValidationFailed` with it; the cleaned value is returned.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from service.errors import ValidationFailed
from service.providers.base import Parent
from service.security.urls import BadURL, parse_url

DIRECTIONS: Final = frozenset({"up", "down", "left", "right"})
_ASPECT_RE: Final = re.compile(r"(\d{1,5}):(\d{1,5})")
_MIB: Final = 1024 * 1024
#: jobhook's bounds on params (see `bounded`); a provider's own may be tighter.
MAX_TEXT_CHARS: Final = 8192
MAX_ITEMS: Final = 16
MAX_OBJECT_BYTES: Final = 16 * 1024
MAX_PARAMS_BYTES: Final = 64 * 1024
#: Params that may carry a base64 image (a `data:` URL, or a bare `mask`), bounded by the body
#: limit and the adapter's image limit instead of MAX_TEXT_CHARS.
IMAGE_FIELDS: Final = frozenset({"mask", "mask_url", "image_urls", "end_url", "image_url", "url"})
#: The longest provider task id taken (uuids are 36 characters, APIMart's ids about 31).
MAX_ID_CHARS: Final = 128


def bounded(params: Mapping[str, Any], *, prefix: str = "params.") -> None:
    """jobhook's own bounds on any request's params, before any provider's: a string (but a
    base64 image) at most MAX_TEXT_CHARS, a list at most MAX_ITEMS scalars or objects, an object
    (`metadata`) at most MAX_OBJECT_BYTES of JSON, and all of it, base64 images aside,
    MAX_PARAMS_BYTES. What is stored with a task, and sent in each webhook about it, stays small.
    """
    total = 0
    for name, value in params.items():
        field = f"{prefix}{name}"
        counted: Any = value
        if isinstance(value, str):
            if name in IMAGE_FIELDS and (name == "mask" or _is_data(value)):
                continue  # a base64 image: the body limit and the adapter's image limit hold
            _text_bound(field, value)
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                raise ValidationFailed(field, f"must have at most {MAX_ITEMS} items")
            for n, item in enumerate(value):
                if isinstance(item, dict):  # Vtrix's mask_areas: {width, height, points}
                    if len(orjson.dumps(item)) > MAX_OBJECT_BYTES:
                        raise ValidationFailed(
                            f"{field}[{n}]", f"must be at most {MAX_OBJECT_BYTES} bytes of JSON"
                        )
                    continue
                if not isinstance(item, str | int | float):
                    raise ValidationFailed(
                        f"{field}[{n}]", "must be a string, a number or an object"
                    )
                if isinstance(item, str) and not (name in IMAGE_FIELDS and _is_data(item)):
                    _text_bound(f"{field}[{n}]", item)
            counted = [v for v in value if not (name in IMAGE_FIELDS and _is_data(v))]
        elif isinstance(value, dict) and len(orjson.dumps(value)) > MAX_OBJECT_BYTES:
            raise ValidationFailed(field, f"must be at most {MAX_OBJECT_BYTES} bytes of JSON")
        total += len(orjson.dumps(counted))
        if total > MAX_PARAMS_BYTES:
            raise ValidationFailed(
                prefix.rstrip(".") or "body",
                f"must be at most {MAX_PARAMS_BYTES} bytes of JSON (base64 images aside)",
            )


def _is_data(value: Any) -> bool:
    return isinstance(value, str) and value[:5].lower() == "data:"


def _text_bound(field: str, value: str) -> None:
    if len(value) > MAX_TEXT_CHARS:
        raise ValidationFailed(field, f"must be at most {MAX_TEXT_CHARS} characters")


def action(provider: str, action: str, actions: Iterable[str]) -> None:
    """Refuses an action the provider does not do, naming the ones it does."""
    if action not in actions:
        supported = ", ".join(sorted(actions))
        raise ValidationFailed("action", f"{provider} does not do {action!r} (it does {supported})")


def prompt(value: Any, *, required: bool, max_chars: int) -> str | None:
    """The stripped prompt; None when optional and absent or blank."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationFailed("params.prompt", "is required and must be a string")
    text = value.strip()
    if required and not text:
        raise ValidationFailed("params.prompt", "must not be empty")
    if len(text) > max_chars:
        raise ValidationFailed("params.prompt", f"must be at most {max_chars} characters")
    return text or None


def whole(field: str, value: Any, low: int, high: int, *, wording: str = "must be") -> int:
    """An int (not a bool) in low..high; `wording` opens the message ("is required:" too)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationFailed(field, f"{wording} a whole number from {low} to {high}")
    return value


def direction(field: str, value: Any) -> str:
    chosen = value.strip().lower() if isinstance(value, str) else None
    if chosen not in DIRECTIONS:
        raise ValidationFailed(field, "must be up, down, left or right")
    return chosen


def aspect_ratio(field: str, value: Any, *, example: str = "") -> str:
    """`W:H` with positive whole numbers, without leading zeros; `example` ends the message."""
    match = _ASPECT_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ValidationFailed(field, f"must be W:H with positive whole numbers{example}")
    return f"{int(match.group(1))}:{int(match.group(2))}"


def http_url(field: str, value: Any, *, message: str = "must be an absolute http(s) URL") -> str:
    """An absolute http(s) URL, stripped."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        parse_url(text)
    except BadURL as exc:
        raise ValidationFailed(field, f"{message}: {exc.reason}" if text else message) from None
    return text


def base64_payload(field: str, payload: str, *, max_bytes: int) -> bytes:
    """The decoded bytes of a bare base64 payload, refused beyond `max_bytes` (whole MiB)."""
    # Refuse an oversized payload before decoding it: 4 base64 characters carry 3 bytes.
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise ValidationFailed(field, f"must decode to at most {max_bytes // _MIB} MiB")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(field, "is not valid base64") from exc


def parent_job_id(
    action: str,
    params: Mapping[str, Any],
    parent: Parent | None,
    *,
    key: str,
    provider: str,
    job: str,
) -> str:
    """The provider's job id of a follow-up's parent: jobhook's parent, or `params.<key>` for a
    job made outside jobhook (`job` names such a job in the message, e.g. "an Apiframe job")."""
    given = params.get(key)
    if given is not None:
        given = provider_id(f"params.{key}", given, what=f"{provider}'s job id")
    if parent is not None:
        if given is not None and given.strip() != parent.provider_task_id:
            raise ValidationFailed(f"params.{key}", "names another job than parent_id")
        return parent.provider_task_id
    if given is None:
        raise ValidationFailed("parent_id", f"{action} needs parent_id, or params.{key} for {job}")
    return given


def provider_id(field: str, value: Any, *, what: str = "the provider's task id") -> str:
    """A provider's id of a task: stripped, then 1..128 printable characters without blanks."""
    text = value.strip() if isinstance(value, str) else ""
    blank = any(c.isspace() for c in text)
    if not 0 < len(text) <= MAX_ID_CHARS or blank or not text.isprintable():
        raise ValidationFailed(field, f"must be {what}: 1 to {MAX_ID_CHARS} characters, no blanks")
    return text
