"""`/openapi.json` (OpenAPI 3.1, written out by hand next to the routes it describes) and
`/docs`, a page that renders it without a CDN.

It says what the service does, all of it: every status a route can answer, every parameter's
range, every field a body may hold. Tests check that every route is in it, and schemathesis
fuzzes the running service against it (tests/e2e/test_schemathesis.py).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from service import __version__
from service.web import openapi_mj
from service.web.openapi_paths import OPEN, OPERATIONS, Codes
from service.web.openapi_schemas import SCHEMAS, ref
from service.web.problems import JSON

TEXTS = {
    400: "The body could not be read: not JSON, not an object, or nested too deep",
    401: "No API key, or not a valid one",
    403: "Development mode (no API keys): the client is not on loopback, or a browser on "
    "another site sent the request",
    404: "No such resource (or not yours)",
    409: "Conflicts with the current state",
    413: "The body is larger than the limit (JOBHOOK_MAX_BODY_BYTES)",
    415: "The body is not JSON (Content-Type)",
    421: "Development mode (no API keys): the Host is not a loopback name",
    422: "A field or query parameter is not valid, or not known (named in errors[].field)",
    429: "Too many failed authentications from this address, or too many long-lived "
    "requests open; try again after Retry-After",
    502: "The provider could not be reached, or answered 5xx or garbage",
    503: "The store could not commit or be read; retry",
    "4XX": "The provider refused the request: its own 4xx status, message and code",
}
_RETRY_AFTER = {"description": "seconds", "schema": {"type": "integer", "minimum": 0}}
HEADERS: dict[int | str, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    429: {"Retry-After": {**_RETRY_AFTER, "required": True}},
    502: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}
UNSAFE = {"post", "put", "patch", "delete"}


def _problem(code: int | str, description: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description or TEXTS[code],
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }
    if code in HEADERS:
        answer["headers"] = HEADERS[code]
    return answer


def _operation(method: str, op: dict[str, Any], codes: Codes) -> dict[str, Any]:
    """`op` with every status it can answer: its own `codes`, and those of its kind."""
    common: list[Any] = [421]  # development mode's Host check comes before any route
    if op.get("security") != OPEN:  # an API key: authenticate()
        common += [401, 403, 429]
    if method in UNSAFE and op.get("security") != OPEN:  # development mode's browser checks
        common += [403, 415]
    responses = dict(op["responses"])
    for entry in (*codes, *common):
        code, text = entry if isinstance(entry, tuple) else (entry, None)
        responses.setdefault(str(code), _problem(code, text))
    return {**op, "responses": dict(sorted(responses.items()))}


def spec(*, dev_mode: bool = False, metrics_token: bool = False) -> dict[str, Any]:
    """The document; `dev_mode` (no API keys: no auth, loopback only) and `metrics_token` (one
    is set) describe the running instance, whose security differs with them."""
    paths: dict[str, Any] = {}
    for path, methods in {**OPERATIONS, **openapi_mj.OPERATIONS}.items():
        paths[path] = {m: _operation(m, op, codes) for m, (op, codes) in methods.items()}
        if path.startswith("/mj/") and not dev_mode:
            for op in paths[path].values():
                op["security"] = openapi_mj.SECURITY
    if metrics_token:
        paths["/metrics"]["get"]["security"] = [{"metrics": []}]
        paths["/readyz"]["get"]["security"] = [{}, {"metrics": []}]
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "jobhook",
            "version": __version__,
            "description": "A durable, signed bridge between backends and Midjourney-style "
            "generation APIs. Errors are RFC 9457 application/problem+json.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "JOBHOOK_API_KEYS"},
                "metrics": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "JOBHOOK_METRICS_TOKEN",
                },
                "mjApiSecret": openapi_mj.SECURITY_SCHEME,
            },
            "schemas": {**SCHEMAS, **openapi_mj.SCHEMAS},
        },
        "tags": [
            {
                "name": openapi_mj.TAG,
                "description": "A midjourney-proxy compatible front onto the same tasks "
                "(README: Coming from midjourney-proxy)",
            }
        ],
        "paths": paths,
    }
    if dev_mode:
        document["info"]["description"] += (
            " This instance runs in development mode: no API keys, loopback clients only."
        )
    else:
        document["security"] = [{"bearer": []}]
    return document


async def openapi(request: Request) -> Response:
    settings = request.app.state.services.settings
    return JSON(spec(dev_mode=settings.dev_mode, metrics_token=settings.metrics_token is not None))


async def docs(request: Request) -> Response:
    page = (resources.files("service.web") / "docs" / "index.html").read_text()
    return HTMLResponse(
        page,
        headers={
            "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def docs_script(request: Request) -> Response:
    script = (resources.files("service.web") / "docs" / "docs.js").read_text()
    return Response(script, media_type="text/javascript")


routes = [
    Route("/openapi.json", openapi),
    Route("/docs", docs),
    Route("/docs/docs.js", docs_script),
]
