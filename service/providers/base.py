"""The provider seam: plain data translation between jobhook and one provider's wire format.

A provider builds requests and parses answers; it never does I/O, touches the store or decides
what a status change means. `service.providers.client.send` performs the requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.domain.models import Observation


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRequest:
    """One HTTP request to a provider; `path` is relative to the provider's base URL."""

    method: str
    path: str
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderResponse:
    status_code: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Parent:
    """What a follow-up knows of its parent task."""

    provider_task_id: str
    action: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The provider accepted a submission."""

    provider_task_id: str
    observation: Observation


class Provider(Protocol):
    """What every provider adapter offers. Attributes are class-level facts about the provider."""

    name: str
    #: jobhook actions this provider implements.
    actions: frozenset[str]
    #: the provider can POST progress/terminal callbacks to a URL we give it.
    supports_callbacks: bool
    #: callbacks carry a signature we can verify; unsigned callbacks are only hints.
    signs_callbacks: bool
    #: the provider's recommended polling interval, in seconds.
    poll_interval: float

    def validate(
        self, action: str, params: Mapping[str, Any], parent: Parent | None
    ) -> dict[str, Any]:
        """Check `params` for `action` before anything is sent; return the cleaned params.

        Raises `service.errors.ValidationFailed` naming the field (as `params.<name>`).
        """
        ...

    def build_submit(
        self,
        action: str,
        params: Mapping[str, Any],
        *,
        parent: Parent | None,
        callback_url: str | None,
        idempotency_key: str | None = None,
    ) -> ProviderRequest: ...

    def parse_submit(self, response: ProviderResponse) -> Submitted:
        """Raises `ProviderRejected` (4xx) or `ProviderUnavailable` (5xx, 429, garbage)."""
        ...

    def build_query(self, provider_task_id: str) -> ProviderRequest: ...

    def parse_query(self, response: ProviderResponse) -> Observation: ...

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool: ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """Raises `service.errors.MalformedCallback` for a body it cannot read."""
        ...
