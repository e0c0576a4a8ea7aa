"""Reading requests: bodies with a size cap, JSON objects, API keys, request ids."""

from __future__ import annotations

import hmac
import ipaddress
import math
from collections.abc import Iterable, Mapping
from typing import Any

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.domain import jsonlimits
from service.domain.ids import new_id
from service.domain.numbers import whole_number
from service.domain.status import Status
from service.errors import (
    BadRequest,
    Forbidden,
    JobhookError,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from service.logging import log
from service.security.tokens import SessionCookies
from service.store.common import decode_cursor
from service.web.limits import auth_throttle, too_many_requests
from service.web.problems import route_of

DEV_OWNER = "local"
SESSION_COOKIE = "jobhook_session"


class UnsupportedMediaType(JobhookError):
    """The request body must be JSON."""

    status = 415
    slug = "unsupported-media-type"


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it exceeds `limit` (never read whole)."""
    declared = request.headers.get("content-length")
    size = whole_number(declared) if declared is not None else None
    if size is not None and size > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
    return bytes(body)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"expected Content-Type: application/json, got {content_type or 'none'}"
        )
    body = await read_body(request, limit)
    try:
        value = jsonlimits.loads(body)
    except jsonlimits.JSONRefused as exc:
        raise BadRequest(f"the body is {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def authenticate(request: Request, api_keys: Mapping[str, str]) -> str:
    """The owner name for the request's `Authorization: Bearer <key>`.

    With no keys configured jobhook is in development mode: every caller is the one local owner,
    and only loopback clients are served. A wrong key is logged (`auth.failed`) and counted
    against the client's address; past too many failures its wrong keys are answered 429 for a
    while. A right key always passes: one client's guesses never lock out another tenant that
    shares its address (a NAT, a proxy), and a 16+ character key is not guessed anyway.
    """
    if not api_keys:
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            raise Forbidden("jobhook has no API keys configured and serves only loopback clients")
        return DEV_OWNER
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        # The dashboard's session cookie reads (GET) only, so a forged cross-site form can
        # never change anything.
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and request.method in ("GET", "HEAD"):
            sessions: SessionCookies = request.app.state.services.sessions
            session_owner = sessions.verify(cookie)
            if session_owner is not None and session_owner in api_keys.values():
                return session_owner
            # Logged, not counted: an expired or signed-out cookie comes from an honest
            # browser, and a session cannot be guessed.
            auth_failed(request, "bad_session", count=False)
        raise Unauthorized("send Authorization: Bearer <key>")
    owner = owner_for_key(presented.strip(), api_keys)
    if owner is None:
        check_auth_throttle(request)
        auth_failed(request, "bad_key")
        raise Unauthorized("the API key is not valid")
    return owner


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_auth_throttle(request: Request) -> None:
    """429 (with Retry-After) while the client's address has failed too often."""
    throttle = auth_throttle(request)
    wait = throttle.retry_after(client_address(request))
    if wait > 0:
        raise too_many_requests(
            request,
            f"too many failed authentications from this address; try again in "
            f"{max(1, math.ceil(wait))} s",
            wait,
        )


def auth_failed(request: Request, reason: str, *, count: bool = True) -> None:
    """One `auth.failed` line (never the key or password presented) and, with `count`, one
    failure against the client's address."""
    address = client_address(request)
    log.warning("auth.failed", client=address, reason=reason, route=route_of(request))
    if count:
        auth_throttle(request).failed(address)


def only_params(request: Request, allowed: Iterable[str]) -> None:
    """Unknown query parameters are a 422 naming them (a typo never silently does nothing)."""
    allowed = set(allowed)
    for name in request.query_params:
        if name not in allowed:
            raise ValidationFailed(name, "unknown query parameter")


def limit_param(request: Request, default: int = 50) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    number = whole_number(raw)
    if number is None or not 1 <= number <= 200:
        raise ValidationFailed("limit", "expected an integer from 1 to 200")
    return number


def status_param(request: Request) -> list[str]:
    """`status=A,B` (repeatable): statuses, case-insensitive. `status=` or `A,,B` is a filter
    gone wrong, never "no filter": refused like a typo."""
    statuses = [
        s.strip().upper() for v in request.query_params.getlist("status") for s in v.split(",")
    ]
    for status in statuses:
        if status not in Status.__members__:
            raise ValidationFailed("status", f"expected any of {', '.join(Status)}")
    return list(dict.fromkeys(statuses))


def cursor_param(request: Request) -> str | None:
    cursor = request.query_params.get("cursor")
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except ValueError:
            raise ValidationFailed("cursor", "not a cursor jobhook issued") from None
    return cursor


def owner_for_key(presented: str, api_keys: Mapping[str, str]) -> str | None:
    owner = None
    for key, name in api_keys.items():
        # Compare against every key so timing does not reveal which one nearly matched.
        if hmac.compare_digest(key.encode(), presented.encode()):
            owner = name
    return owner


def is_loopback(host: str) -> bool:
    if host in ("testclient", "localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestId:
    """Pure ASGI middleware: a request id per request, bound into every log line, echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 64 and given.isprintable() else new_id("req")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)
