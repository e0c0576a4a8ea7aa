"""What the provider adapters share on the wire: the key they hold, headers, Retry-After, JSON
bodies, loose text and progress, and the request, acceptance and callback pieces alike in each.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from service.domain import jsonlimits
from service.domain.models import Observation
from service.domain.status import Status
from service.errors import MalformedCallback, ProviderBusy, ProviderUnavailable
from service.providers.base import ProviderRequest, Submitted


class Adapter:
    """What every adapter holds alike: its name and base URL (class defaults) and an API key."""

    name: str
    base_url: str

    def __init__(
        self, *, api_key: str, base_url: str | None = None, name: str | None = None
    ) -> None:
        if not api_key:
            raise ValueError(f"{type(self).__name__} needs an API key")
        self.name = type(self).name if name is None else name
        self.base_url = (type(self).base_url if base_url is None else base_url).rstrip("/")
        self._api_key = api_key


def request(
    method: str,
    path: str,
    body: Any,
    *,
    auth: Mapping[str, str],
    idempotency_key: str | None = None,
) -> ProviderRequest:
    """A JSON request carrying the provider's `auth` headers (and an Idempotency-Key if given)."""
    headers = {**auth, "Accept": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return ProviderRequest(method=method, path=path, json=body, headers=headers)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of header `name` (given in lower case), whatever casing the sender used."""
    # A plain dict keeps the sender's casing; Starlette and httpx headers are lower-cased.
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_after(value: str | None) -> float | None:
    """A Retry-After value (seconds or an HTTP date) as seconds from now, never negative."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def unavailable(
    provider: str, status: int, message: str, headers: Mapping[str, str]
) -> ProviderUnavailable:
    """An answer worth retrying later (429 a rate limit, else `HTTP status`), with Retry-After."""
    wait = retry_after(header(headers, "retry-after"))
    if status == 429:
        return ProviderBusy(
            f"{provider} is rate limiting jobhook (HTTP 429): {message}", retry_after=wait
        )
    return ProviderUnavailable(f"{provider} answered HTTP {status}: {message}", retry_after=wait)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object; None for anything else (garbage, a list, a proxy's page)."""
    try:
        parsed = jsonlimits.loads(raw, lenient=True)
    except jsonlimits.JSONRefused:
        return None
    return parsed if isinstance(parsed, dict) else None


def text(value: Any) -> str | None:
    """A string stripped, or None when it is not a string or only blanks."""
    return value.strip() or None if isinstance(value, str) else None


def progress(value: Any) -> int | None:
    """A percent as a number or numeric string, whole and clamped to 0..100; None if unreadable."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = int(float(value))
    except (ValueError, OverflowError):
        return None
    return max(0, min(100, number))


def accepted(
    task_id: str, *, status: Status, raw: Any, detail: str | None, progress: int = 0
) -> Submitted:
    """A submission the provider took, with its first Observation (source "api")."""
    observation = Observation(
        status=status,
        source="api",
        progress=progress,
        provider_task_id=task_id,
        dedupe_key=f"submit:{task_id}",
        raw=raw,
        detail=detail,
    )
    return Submitted(provider_task_id=task_id, observation=observation)


def callback_object(provider: str, body: bytes) -> dict[str, Any]:
    """A callback body as a JSON object; raises MalformedCallback for anything else."""
    try:
        parsed = jsonlimits.loads(body, lenient=True)
    except jsonlimits.JSONRefused as exc:
        raise MalformedCallback(f"{provider} callback body is {exc}") from None
    if not isinstance(parsed, dict):
        raise MalformedCallback(f"{provider} callback body is not a JSON object")
    return parsed


def callback_dedupe_key(body: bytes) -> str:
    # The body's hash: a provider's retry of one callback is the same observation, not a new one.
    return "cb:" + hashlib.sha256(body).hexdigest()[:32]
