"""Client webhook endpoints and the delivery log: register, list, delete, re-enable, rotate;
list deliveries and send one again."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.domain.models import EVENT_TYPES
from service.errors import NotFound, ValidationFailed
from service.security.ssrf import UnsafeURL
from service.services import Services
from service.web.problems import JSON
from service.web.requests import (
    authenticate,
    cursor_param,
    limit_param,
    only_params,
    read_json_object,
)

FIELDS = frozenset({"url", "events", "description"})
DELIVERY_STATUSES = ("pending", "delivered", "dead")
MAX_DESCRIPTION = 500


def _svc(request: Request) -> tuple[Services, str]:
    svc: Services = request.app.state.services
    return svc, authenticate(request, svc.settings.api_keys)


async def create_endpoint(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ())
    body = await read_json_object(request, svc.settings.max_body_bytes)
    for name in body:
        if name not in FIELDS:
            raise ValidationFailed(name, f"unknown field; expected {', '.join(sorted(FIELDS))}")
    url = body.get("url")
    if not isinstance(url, str):
        raise ValidationFailed("url", "expected an http(s) URL")
    try:
        await svc.guard.check(url)
    except UnsafeURL as exc:
        raise ValidationFailed("url", exc.reason) from None
    events = body.get("events", [])
    if not isinstance(events, list) or not all(e in EVENT_TYPES for e in events):
        raise ValidationFailed("events", f"expected a list of {', '.join(EVENT_TYPES)}")
    description = body.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise ValidationFailed(
            "description", f"expected a string of at most {MAX_DESCRIPTION} characters"
        )
    endpoint = await svc.store.create_endpoint(owner, url, list(dict.fromkeys(events)), description)
    return JSON(endpoint, 201, headers={"Location": f"/v1/endpoints/{endpoint['id']}"})


async def list_endpoints(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ())
    return JSON({"data": await svc.store.list_endpoints(owner), "next_cursor": None})


async def get_endpoint(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ())
    endpoint = await svc.store.get_endpoint(owner, request.path_params["id"])
    if endpoint is None:
        raise NotFound(f"no endpoint {request.path_params['id']}")
    return JSON(endpoint)


async def delete_endpoint(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ())
    await svc.store.delete_endpoint(owner, request.path_params["id"])
    return Response(status_code=204)


async def enable_endpoint(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ())
    return JSON(await svc.store.enable_endpoint(owner, request.path_params["id"]))


async def rotate_secret(request: Request) -> Response:
    """A new secret (shown once); the old one keeps signing beside it for 24 h."""
    svc, owner = _svc(request)
    only_params(request, ())
    return JSON(await svc.store.rotate_secret(owner, request.path_params["id"], time.time()))


async def list_deliveries(request: Request) -> Response:
    svc, owner = _svc(request)
    only_params(request, ("status", "task_id", "limit", "cursor"))
    status = request.query_params.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationFailed("status", f"expected one of {', '.join(DELIVERY_STATUSES)}")
    page = await svc.store.list_deliveries(
        owner,
        status=status,
        task_id=request.query_params.get("task_id"),
        cursor=cursor_param(request),
        limit=limit_param(request),
    )
    return JSON({"data": page.data, "next_cursor": page.next_cursor})


async def get_delivery(request: Request) -> Response:
    """One delivery: the exact body it signs and sends, and its last attempts."""
    svc, owner = _svc(request)
    only_params(request, ())
    delivery = await svc.store.get_delivery(owner, request.path_params["id"])
    if delivery is None:
        raise NotFound(f"no delivery {request.path_params['id']}")
    return JSON(delivery)


async def retry_delivery(request: Request) -> Response:
    """Send a delivery again with the same webhook-id (receivers dedupe on it); a pending one
    is made due now, unless an attempt is under way."""
    svc, owner = _svc(request)
    only_params(request, ())
    delivery = await svc.store.retry_delivery(owner, request.path_params["id"], time.time())
    svc.hub.deliveries_written()
    return JSON(delivery, 202)


routes = [
    Route("/v1/endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/endpoints/{id}", get_endpoint, methods=["GET"]),
    Route("/v1/endpoints/{id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/endpoints/{id}/enable", enable_endpoint, methods=["POST"]),
    Route("/v1/endpoints/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/deliveries/{id}", get_delivery, methods=["GET"]),
    Route("/v1/deliveries/{id}/retry", retry_delivery, methods=["POST"]),
]
