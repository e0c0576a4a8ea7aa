"""The task API: submit, look up (with long-poll), list, history, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import actions
from service.domain.clock import parse_rfc3339, to_iso
from service.domain.models import ACTIONS
from service.domain.status import TERMINAL, Status
from service.errors import NotFound, ValidationFailed
from service.services import Services
from service.store.base import IdempotencyKey, TaskQuery
from service.submit import parse_submit, request_hash, submit
from service.web.limits import TooManyRequests, slot
from service.web.problems import JSON
from service.web.requests import (
    authenticate,
    cursor_param,
    limit_param,
    only_params,
    read_json_object,
    status_param,
)

MAX_WAIT = 120.0
#: RFC 3339's date-time, and nothing else datetime.fromisoformat would also read
_SECONDS = re.compile(r"\d{1,6}(\.\d{1,6})?", re.ASCII)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
#: Every provider name build_providers can enable (a test checks that the two agree).
PROVIDER_NAMES = (
    "apimart",
    "apiframe",
    "vtrix",
    "simulator",
    "simulator-apimart",
    "simulator-vtrix",
)
LIST_PARAMS = {"limit", "cursor", "status", "provider", "action", "created_after", "created_before"}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def create_task(request: Request) -> Response:
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ("wait",))
    wait = _wait_param(request)
    body = await read_json_object(request, svc.settings.max_upload_bytes)
    key = request.headers.get("idempotency-key")
    idempotency = None
    if key is not None:
        if not 1 <= len(key) <= 255:
            raise ValidationFailed("Idempotency-Key", "expected 1 to 255 characters")
        idempotency = IdempotencyKey(key=key, request_hash=request_hash(body))
    try:
        task, created = await submit(svc, owner, parse_submit(body), idempotency=idempotency)
    except TooManyRequests as exc:  # the owner's queue for the provider is full
        request.state.retry_after = exc.extra["retry_after"]
        raise
    if wait and task["status"] == Status.NOT_START:
        # ?wait=S: answer once the provider took the task (or it ended), as before queueing
        with slot(request, owner, "long-polls and event streams"):
            task = await _wait_for_change(svc, task, owner, wait)
    headers = {"Location": f"/v1/tasks/{task['id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSON(task, 202, headers=headers)


async def get_task(request: Request) -> Response:
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ("wait",))
    ref = request.path_params["id"]
    task = await svc.store.get_task(ref, owner=owner)
    if task is None:
        raise NotFound(f"no task {ref}")
    wait = _wait_param(request)
    if wait > 0 and task["status"] not in TERMINAL and task["status"] != Status.MODAL:
        # a waiting request holds a connection: each owner gets a few (limits.Slots)
        with slot(request, owner, "long-polls and event streams"):
            task = await _wait_for_change(svc, task, owner, wait)
    return JSON(task)


def _wait_param(request: Request) -> float:
    """`?wait=S` (0 when absent), checked."""
    raw_wait = request.query_params.get("wait")
    if raw_wait is None:
        return 0.0
    if not _SECONDS.fullmatch(raw_wait):  # float() would take "1e1", "+1", " 1", "1_0"
        raise ValidationFailed("wait", "expected a number of seconds, e.g. 30 or 2.5")
    wait = float(raw_wait)
    if not 0 <= wait <= MAX_WAIT:
        raise ValidationFailed("wait", f"expected 0 to {MAX_WAIT:g} seconds")
    return wait


async def _wait_for_change(
    svc: Services, task: dict[str, Any], owner: str, wait: float
) -> dict[str, Any]:
    """Block until the task's next applied change (or terminal/MODAL), at most `wait` seconds,
    woken through the hub: by ingest's commit, or by the change feed for another process's."""
    seen = task["sequence"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while task["status"] not in TERMINAL and task["status"] != Status.MODAL:
        event = svc.hub.register(task["id"])
        try:
            fresh = await svc.store.get_task(task["id"], owner=owner)
            if fresh is None:
                break
            task = fresh
            remaining = deadline - loop.time()
            if task["sequence"] != seen or remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await event.wait()
        finally:
            svc.hub.unregister(task["id"], event)
    return task


async def list_tasks(request: Request) -> Response:
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, LIST_PARAMS)
    q = request.query_params
    statuses = status_param(request)
    for name, known in (("provider", PROVIDER_NAMES), ("action", ACTIONS)):
        if name in q and q[name] not in known:
            raise ValidationFailed(name, f"expected one of {', '.join(known)}")
    page = await svc.store.list_tasks(
        TaskQuery(
            owner=owner,
            status=statuses,
            provider=q.get("provider"),
            action=q.get("action"),
            created_after=_timestamp(request, "created_after"),
            created_before=_timestamp(request, "created_before"),
            limit=limit_param(request),
            cursor=cursor_param(request),
        )
    )
    return JSON({"data": page.data, "next_cursor": page.next_cursor})


def _timestamp(request: Request, name: str) -> str | None:
    """An RFC 3339 date-time, as the store compares them; present but empty is not one."""
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        if not _RFC3339.fullmatch(value):
            raise ValueError(value)
        return to_iso(parse_rfc3339(value))
    except (ValueError, OverflowError):  # OverflowError: a year past 9999 once in UTC
        raise ValidationFailed(name, "expected an RFC 3339 date-time") from None


async def list_events(request: Request) -> Response:
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ("limit", "cursor"))
    ref = request.path_params["id"]
    task = await svc.store.get_task(ref, owner=owner)
    if task is None:
        raise NotFound(f"no task {ref}")
    page = await svc.store.list_events(
        task["id"], cursor=cursor_param(request), limit=limit_param(request, 200)
    )
    return JSON({"data": page.data, "next_cursor": page.next_cursor})


async def cancel_task(request: Request) -> Response:
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ())
    return JSON(await actions.cancel(svc, owner, request.path_params["id"]))


async def modal_task(request: Request) -> Response:
    """Finish a MODAL task (APIMart's two-step inpaint) with a mask and a prompt."""
    svc = _services(request)
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ())
    body = await read_json_object(request, svc.settings.max_upload_bytes)
    return JSON(await actions.modal(svc, owner, request.path_params["id"], body), 202)


routes = [
    Route("/v1/tasks", create_task, methods=["POST"]),
    Route("/v1/tasks", list_tasks, methods=["GET"]),
    Route("/v1/tasks/{id}", get_task, methods=["GET"]),
    Route("/v1/tasks/{id}/events", list_events, methods=["GET"]),
    Route("/v1/tasks/{id}/cancel", cancel_task, methods=["POST"]),
    Route("/v1/tasks/{id}/modal", modal_task, methods=["POST"]),
]
