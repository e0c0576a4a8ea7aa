"""The provider seam: plain data translation between jobhook and one provider's wire format.

A provider builds requests and parses answers; it never does I/O, touches the store or decides
what a status change means. `service.providers.client.send` performs the requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    #: the provider honours an Idempotency-Key on submit, so a resend cannot bill twice.
    idempotent_submit: bool

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

    def parse_query(self, response: ProviderResponse) -> Observation:
        """The task as the provider's API reports it (source "poll").

        Raises `ProviderRejected` when the provider will never know the task (403 another
        account's, 404 unknown or expired): the poller ends the task instead of retrying; and
        `ProviderUnavailable` for 429 (with retry_after), 5xx and garbage: the poller backs off.
        """
        ...

    def verify_callback(self, headers: Mapping[str, str], body: bytes) -> bool:
        """True if the callback is authentic. Unsigned providers (`signs_callbacks = False`)
        return True: their callbacks are only hints, confirmed by fetching the task."""
        ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> list[Observation]:
        """Raises `service.errors.MalformedCallback` for a body it cannot read."""
        ...


@runtime_checkable
class ModalProvider(Provider, Protocol):
    """A provider with a two-step inpaint (APIMart): the task waits in MODAL for a modal call."""

    def validate_modal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check `{prompt?, mask_url | mask}`; raises ValidationFailed naming `params.<field>`."""
        ...

    def build_modal(self, provider_task_id: str, params: Mapping[str, Any]) -> ProviderRequest: ...

    def parse_modal(self, response: ProviderResponse) -> Observation:
        """The provider accepted the modal call: an Observation with status SUBMITTED,
        source "api" and `modal_call=True` (the one move out of MODAL back to SUBMITTED)."""
        ...


@runtime_checkable
class QueryShapes(Protocol):
    """A provider with more than one documented way to read a task (APIMart: `/v1/midjourney/
    {id}` and `/v1/tasks/{id}`). The poller asks them in turn while one answers 404, and says
    which answered, so the next poll starts with the one that works."""

    def query_requests(self, provider_task_id: str, *, after_modal: bool) -> list[ProviderRequest]:
        """The requests that read the task, in the order to try them (the documented one for
        this task first, unless it has been found not to answer)."""
        ...

    def query_answered(self, request: ProviderRequest, *, found: bool) -> None:
        """`request` was answered (`found`), or answered 404: remember for the next polls."""
        ...


@runtime_checkable
class CancelProvider(Provider, Protocol):
    """A provider that documents a way to cancel a task. None of APIMart, Apiframe and Vtrix
    does (../shared/providers/README.md): their tasks end CANCEL in jobhook only."""

    def build_cancel(self, provider_task_id: str) -> ProviderRequest: ...

    def parse_cancel(self, response: ProviderResponse) -> bool:
        """True when the provider confirmed the cancellation; raises `ProviderRejected` (it
        refused) or `ProviderUnavailable` (429, 5xx, garbage)."""
        ...
