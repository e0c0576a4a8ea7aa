"""The operations of `/openapi.json`: every route, its parameters, bodies and answers.

Each operation lists the statuses particular to it; those every operation of its kind answers
(auth, development mode's checks) are added by `openapi._operation`.
"""

from __future__ import annotations

from typing import Any

from service.domain.models import ACTIONS
from service.web.endpoints import DELIVERY_STATUSES
from service.web.openapi_schemas import DATE_TIME, PROVIDERS, STATUSES, STRING, enum, ref
from service.web.tasks import MAX_WAIT


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or STRING}


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or STRING}


def _link(operation: str, pointer: str) -> dict[str, Any]:
    """An OpenAPI link: `operation` on the id found at `pointer` in this answer."""
    return {"operationId": operation, "parameters": {"id": f"$response.body#{pointer}"}}


def _endpoint_links(pointer: str) -> dict[str, Any]:
    return {
        "GetEndpoint": _link("getEndpoint", pointer),
        "EnableEndpoint": _link("enableEndpoint", pointer),
        "RotateEndpointSecret": _link("rotateEndpointSecret", pointer),
        "DeleteEndpoint": _link("deleteEndpoint", pointer),
    }


def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


ID = _path("id")
LIMIT = _query(
    "limit", "page size", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
)
EVENTS_LIMIT = {**LIMIT, "schema": {**LIMIT["schema"], "default": 200}}
CURSOR = _query("cursor", "next_cursor of the previous page (another value is a 422)")
STATUS_LIST = {
    **_query("status", "comma-separated (or repeated): any of these statuses"),
    "style": "form",
    "explode": False,
    "schema": {"type": "array", "items": enum(STATUSES)},
}
HEALTHZ = {
    "type": "object",
    "required": ["status", "version"],
    "properties": {"status": enum(["ok"]), "version": STRING},
}
WAIT = _query(
    "wait",
    "seconds to wait for the task's next change (at once if it has ended or is MODAL)",
    {"type": "number", "minimum": 0, "maximum": MAX_WAIT},
)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "the same key and body give the same task",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
LOCATION = {"Location": {"required": True, "schema": {"type": "string"}}}
TASK = _json(ref("Task"), "The task")
ENDPOINT = _json(ref("Endpoint"), "The endpoint")
OPEN: list[dict[str, Any]] = []  # no security requirement
TASK_LINKS = {
    "GetTask": _link("getTask", "/id"),
    "ListTaskEvents": _link("listTaskEvents", "/id"),
    "CancelTask": _link("cancelTask", "/id"),
    "ModalTask": _link("modalTask", "/id"),
}

Codes = tuple[int | str | tuple[int, str], ...]


def _op(
    op_id: str,
    summary: str,
    answers: dict[str, Any],
    codes: Codes = (),
    *,
    params: tuple[dict[str, Any], ...] = (),
    body: str | dict[str, Any] | None = None,
    security: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], Codes]:
    """An operation, and the statuses it answers besides those all of its kind answer (see
    `_operation`); a status given as (code, text) says what it means there."""
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": answers}
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = _body(body) if isinstance(body, str) else body
    if security is not None:
        op["security"] = security
    return op, codes


NO_TASK = (404, "No such task (or not yours)")
NO_ENDPOINT = (404, "No such endpoint")
UPLOAD_LIMIT = (413, "The body is larger than the limit (JOBHOOK_MAX_UPLOAD_BYTES)")
BUSY = (503, "The store could not commit, or the provider is rate limiting jobhook; retry")
READYZ = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": enum(["ready"]),
        "providers": {"type": "array", "items": enum(PROVIDERS)},
        "backlog": {"type": "integer", "minimum": 0},
        "poll_behind_seconds": {
            "type": "number",
            "minimum": 0,
            "description": "How long the oldest due poll has waited past its due time",
        },
        "warnings": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Ready, but worth a look (e.g. the poller is behind)",
        },
    },
}
NOT_READY = {
    "description": "Not ready (why: only with the metrics token, when one is set)",
    "content": {
        "application/problem+json": {"schema": ref("Problem")},
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": enum(["not ready"])},
            }
        },
    },
}

OPERATIONS: dict[str, dict[str, tuple[dict[str, Any], Codes]]] = {
    "/v1/tasks": {
        "post": _op(
            "createTask",
            "Submit a task (sent at once when the provider has room, else queued; ?wait "
            "answers once the provider took it)",
            {
                "202": {
                    **TASK,
                    "description": "Accepted: the task, submitted to the provider (SUBMITTED) "
                    "or queued for it (NOT_START, queued: true)",
                    "links": TASK_LINKS,
                    "headers": {
                        **LOCATION,
                        "Idempotent-Replayed": {"schema": enum(["true"])},
                    },
                }
            },
            (
                400,
                (404, "The provider does not know the parent task"),
                (409, "Idempotency-Key reused with another body, or the parent is not SUCCESS"),
                UPLOAD_LIMIT,
                415,
                422,
                "4XX",
                (429, "Too many of this owner's tasks wait for the provider; Retry-After"),
                502,
                BUSY,
            ),
            params=(IDEMPOTENCY_KEY, WAIT),
            body="SubmitRequest",
        ),
        "get": _op(
            "listTasks",
            "List tasks, newest first",
            {"200": _json(ref("TaskPage"), "A page of tasks")},
            (422, 503),
            params=(
                LIMIT,
                CURSOR,
                STATUS_LIST,
                _query("provider", "provider name", enum(PROVIDERS)),
                _query("action", "action name", enum(ACTIONS)),
                _query("created_after", "RFC 3339", DATE_TIME),
                _query("created_before", "RFC 3339", DATE_TIME),
            ),
        ),
    },
    "/v1/tasks/{id}": {
        "get": _op(
            "getTask",
            "A task by jobhook id or provider task id; ?wait long-polls",
            {"200": TASK},
            (NO_TASK, 422, 503),
            params=(ID, WAIT),
        )
    },
    "/v1/tasks/{id}/events": {
        "get": _op(
            "listTaskEvents",
            "Every observation of the task, oldest first, with its outcome",
            {"200": _json(ref("EventPage"), "A page of events")},
            (NO_TASK, 422, 503),
            params=(ID, EVENTS_LIMIT, CURSOR),
        )
    },
    "/v1/tasks/{id}/cancel": {
        "post": _op(
            "cancelTask",
            "Cancel a task that has not ended (and say whether the provider confirmed)",
            {"200": _json(ref("CancelledTask"), "The task, CANCEL")},
            (NO_TASK, (409, "The task has already ended"), 422, 503),
            params=(ID,),
        )
    },
    "/v1/tasks/{id}/modal": {
        "post": _op(
            "modalTask",
            "Finish a MODAL task with a mask and a prompt",
            {
                "202": {
                    **TASK,
                    "description": "Accepted: the task, SUBMITTED again; its provider_task_id"
                    " is the one the provider's answer names (APIMart may name a new one)",
                }
            },
            (
                400,
                NO_TASK,
                (409, "The task is not MODAL, its provider has no modal call, or one is under way"),
                UPLOAD_LIMIT,
                415,
                422,
                "4XX",
                502,
                BUSY,
            ),
            params=(ID,),
            body="ModalRequest",
        )
    },
    "/v1/events/stream": {
        "get": _op(
            "streamEvents",
            "Server-sent events of task changes (event: task, data: <task>)",
            {
                "200": {
                    "description": "An event stream; it ends after an hour (reconnect)",
                    "content": {"text/event-stream": {"schema": STRING}},
                }
            },
            (422,),
            params=(_query("task_id", "only this task"), STATUS_LIST),
        )
    },
    "/v1/endpoints": {
        "post": _op(
            "createEndpoint",
            "Register a webhook endpoint (its secret is returned once)",
            {
                "201": _json(
                    ref("Endpoint"),
                    "The endpoint, with its secret",
                    links=_endpoint_links("/id"),
                    headers=LOCATION,
                )
            },
            (400, 413, 415, 422, 503),
            body="EndpointRequest",
        ),
        "get": _op(
            "listEndpoints",
            "List endpoints",
            {"200": _json(ref("EndpointPage"), "Endpoints", links=_endpoint_links("/data/0/id"))},
            (422, 503),
        ),
    },
    "/v1/endpoints/{id}": {
        "get": _op(
            "getEndpoint", "An endpoint", {"200": ENDPOINT}, (NO_ENDPOINT, 422, 503), params=(ID,)
        ),
        "delete": _op(
            "deleteEndpoint",
            "Delete an endpoint (its pending deliveries are not sent)",
            {"204": {"description": "Deleted"}},
            (NO_ENDPOINT, 422, 503),
            params=(ID,),
        ),
    },
    "/v1/endpoints/{id}/enable": {
        "post": _op(
            "enableEndpoint",
            "Re-enable a disabled endpoint",
            {"200": ENDPOINT},
            (NO_ENDPOINT, 422, 503),
            params=(ID,),
        )
    },
    "/v1/endpoints/{id}/rotate-secret": {
        "post": _op(
            "rotateEndpointSecret",
            "A new secret; the old one keeps signing beside it for 24 h",
            {"200": {**ENDPOINT, "description": "The endpoint, with its new secret"}},
            (NO_ENDPOINT, 422, 503),
            params=(ID,),
        )
    },
    "/v1/deliveries": {
        "get": _op(
            "listDeliveries",
            "The outbound delivery log, newest first",
            {
                "200": _json(
                    ref("DeliveryPage"),
                    "A page of deliveries",
                    links={"RetryDelivery": _link("retryDelivery", "/data/0/id")},
                )
            },
            (422, 503),
            params=(
                _query("status", "only deliveries in this state", enum(DELIVERY_STATUSES)),
                _query("task_id", "one task's deliveries"),
                LIMIT,
                CURSOR,
            ),
        )
    },
    "/v1/deliveries/{id}": {
        "get": _op(
            "getDelivery",
            "One delivery: its signed body and its last 20 attempts",
            {"200": _json(ref("DeliveryDetail"), "The delivery")},
            ((404, "No such delivery"), 422, 503),
            params=(ID,),
        )
    },
    "/v1/deliveries/{id}/retry": {
        "post": _op(
            "retryDelivery",
            "Send a delivery again (same webhook-id); a pending one is due now",
            {"202": _json(ref("Delivery"), "The delivery, pending")},
            ((404, "No such delivery"), 422, 503),
            params=(ID,),
        )
    },
    "/v1/callbacks/{provider}/{token}": {
        "post": _op(
            "receiveCallback",
            "Where providers call back (token-authenticated; never a 3xx)",
            {
                "200": _json(
                    ref("CallbackAnswer"),
                    "Recorded: applied, duplicate, stale or conflict (the provider stops retrying)",
                ),
                "202": _json(ref("CallbackAnswer"), "An unsigned hint: the task is polled now"),
            },
            (
                (400, "The body could not be understood (recorded as rejected)"),
                (401, "The token, or the provider's signature, is not valid"),
                (403, "The body names another task than the token"),
                (404, "No such provider enabled here, or no such task"),
                (413, "The body is larger than the limit (JOBHOOK_MAX_BODY_BYTES)"),
                (503, "The store could not commit: the provider retries, nothing is lost"),
            ),
            params=(_path("provider", enum(PROVIDERS)), _path("token")),
            body={
                "required": False,
                "description": "the provider's own callback body",
                "content": {"application/json": {"schema": {}}},
            },
            security=OPEN,
        )
    },
    "/healthz": {
        "get": _op(
            "healthz",
            "The process answers",
            {"200": _json(HEALTHZ, "OK")},
            security=OPEN,
        )
    },
    "/readyz": {
        "get": _op(
            "readyz",
            "Store writable, workers alive, backlog under its limit (poll lag: a warning)",
            {
                "200": _json(
                    READYZ, "Ready (details only with the metrics token, when one is set)"
                ),
                "503": NOT_READY,
            },
            security=OPEN,
        )
    },
    "/metrics": {
        "get": _op(
            "metrics",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition format 0.0.4",
                    "content": {"text/plain": {"schema": STRING}},
                }
            },
            ((401, "JOBHOOK_METRICS_TOKEN is set and was not presented"), 503),
            security=OPEN,
        )
    },
    "/openapi.json": {
        "get": _op(
            "openapi",
            "This document",
            {"200": _json({"type": "object"}, "OpenAPI 3.1")},
            security=OPEN,
        )
    },
}
