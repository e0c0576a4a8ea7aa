"""jobhook's exceptions. Each maps to one RFC 9457 problem answer; the docstring is the title.

JobhookError
├── ValidationFailed      422  a field of the request is wrong (names the field)
├── BadRequest            400  the body is not JSON, or not the content type we take
├── Unauthorized          401  no key, a wrong key, a bad callback token or signature
├── Forbidden             403  a callback names another task than its token
├── NotFound              404  no such task (or not yours)
├── Conflict              409  idempotency key reused with another body; wrong state
├── PayloadTooLarge       413  body over JOBHOOK_MAX_BODY_BYTES
├── ProviderRejected      4xx/502  the provider refused the request (its message and code kept)
├── ProviderUnavailable   502  the provider could not be reached or answered 5xx
│   └── ProviderBusy      503  the provider answered 429 (its rate or concurrency limit)
└── StoreUnavailable      503  the store could not commit; the caller should retry
"""

from __future__ import annotations

from typing import Any


class JobhookError(Exception):
    """Something went wrong."""

    status = 500
    slug = "internal"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    @property
    def title(self) -> str:
        return (type(self).__doc__ or "Error").strip().splitlines()[0]


class ValidationFailed(JobhookError):
    """A field of the request is not valid."""

    status = 422
    slug = "validation"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class BadRequest(JobhookError):
    """The request could not be read."""

    status = 400
    slug = "bad-request"


class Unauthorized(JobhookError):
    """Not authenticated."""

    status = 401
    slug = "unauthorized"


class Forbidden(JobhookError):
    """Not allowed."""

    status = 403
    slug = "forbidden"


class NotFound(JobhookError):
    """Not found."""

    status = 404
    slug = "not-found"


class Conflict(JobhookError):
    """The request conflicts with the current state."""

    status = 409
    slug = "conflict"


class PayloadTooLarge(JobhookError):
    """The request body is too large."""

    status = 413
    slug = "payload-too-large"


class ProviderRejected(JobhookError):
    """The provider refused the request."""

    slug = "provider-rejected"

    def __init__(
        self,
        message: str,
        *,
        http_status: int,
        provider_code: str | None = None,
        field: str | None = None,
    ) -> None:
        self.http_status = http_status
        self.provider_code = provider_code
        self.field = field
        # A provider's own 4xx is the client's problem: pass it through. Anything else is 502.
        self.status = http_status if 400 <= http_status < 500 and http_status != 401 else 502
        extra: dict[str, Any] = {"provider_status": http_status, "provider_code": provider_code}
        if field:
            extra["errors"] = [{"field": field, "message": message}]
        super().__init__(message, **extra)


class ProviderUnavailable(JobhookError):
    """The provider could not be reached."""

    status = 502
    slug = "provider-unavailable"

    def __init__(
        self, message: str, *, retry_after: float | None = None, reached: bool = True
    ) -> None:
        self.retry_after = retry_after
        #: False when the request never reached the provider (connection refused): safe to resend
        self.reached = reached
        super().__init__(message)


class ProviderBusy(ProviderUnavailable):
    """The provider is rate limiting jobhook (it answered 429); retry later."""

    status = 503
    slug = "provider-busy"


class StoreUnavailable(JobhookError):
    """The store could not commit; retry."""

    status = 503
    slug = "store-unavailable"


class MalformedCallback(JobhookError):
    """The callback body could not be understood."""

    status = 400
    slug = "malformed-callback"
