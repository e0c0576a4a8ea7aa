"""RFC 9457 problem+json answers, and the exception handlers that produce them."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from service.errors import JobhookError, ProviderUnavailable, StoreUnavailable
from service.logging import log


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int, title: str, detail: str, *, slug: str, instance: str | None = None, **extra: Any
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:jobhook:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(
        orjson.dumps(body), status, headers=headers, media_type="application/problem+json"
    )


def route_of(request: Request) -> str:
    """The route's template (`/v1/callbacks/{provider}/{token}`), never the path itself: a
    callback path carries its token, which must not reach a log line."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "")) or "unmatched"


async def on_jobhook_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobhookError)
    response = problem(
        exc.status, exc.title, exc.detail, slug=exc.slug, instance=request.url.path, **exc.extra
    )
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = "1"
        log.error("store.unavailable", detail=exc.detail, route=route_of(request))
    if isinstance(exc, ProviderUnavailable) and exc.retry_after:
        response.headers["Retry-After"] = str(int(exc.retry_after))
    return response


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed"}
    response = problem(
        exc.status_code,
        titles.get(exc.status_code, "HTTP error"),
        str(exc.detail),
        slug="http",
        instance=request.url.path,
    )
    response.headers.update(exc.headers or {})  # Starlette's 405 carries `Allow`
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        response.headers["Allow"] = allowed
    return response


def _allowed_methods(request: Request) -> str:
    """Every method the request's path answers (RFC 9110 `Allow`). Starlette's own 405 names
    only the first route whose path matched, and one path may be served by several routes
    (`GET /v1/tasks` and `POST /v1/tasks` are two)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("http.unhandled", route=route_of(request), exc_info=exc)
    return problem(500, "Internal error", "jobhook failed to handle this request", slug="internal")
