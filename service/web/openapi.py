"""`/openapi.json` (OpenAPI 3.1, written out by hand next to the routes it describes; a test
checks that every route is in it) and `/docs`, a page that renders it without a CDN."""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from service import __version__
from service.domain.models import ACTIONS, EVENT_TYPES
from service.domain.status import Status
from service.web.problems import JSON

STATUSES = [s.value for s in Status]
OUTCOMES = ["applied", "duplicate", "stale", "conflict", "rejected"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    schema = {"content": {"application/problem+json": {"schema": _ref("Problem")}}}
    texts = {
        400: "The body could not be read",
        401: "No key, or a wrong one",
        403: "Not allowed",
        404: "No such resource (or not yours)",
        409: "Conflicts with the current state",
        413: "Body too large",
        415: "Not JSON",
        422: "A field is not valid (named in errors[].field)",
        502: "The provider refused or could not be reached",
        503: "The store could not commit; retry",
    }
    return {str(c): {"description": texts[c], **schema} for c in codes}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": _ref(item)},
            "next_cursor": {"type": ["string", "null"]},
        },
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema or {"type": "string"},
    }


ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
LIMIT = _query("limit", "1 to 200", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR = _query("cursor", "next_cursor of the previous page")

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
            "task_id": {"type": "string"},
        },
    },
    "Result": {
        "type": ["object", "null"],
        "properties": {
            "images": {"type": "array", "items": {"type": "string"}},
            "grid_url": {"type": ["string", "null"]},
            "videos": {"type": "array", "items": {"type": "string"}},
            "actions": {"type": "array", "items": {"type": "object"}},
            "cost": {"type": ["object", "null"]},
        },
    },
    "TaskError": {
        "type": ["object", "null"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "provider_code": {"type": ["string", "null"]},
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "provider", "action", "status", "progress", "sequence"],
        "properties": {
            "id": {"type": "string", "examples": ["task_01M7ZS3GYSXE146SFY5TVYS1G3"]},
            "provider": {"type": "string"},
            "action": {"type": "string", "enum": list(ACTIONS)},
            "status": {"type": "string", "enum": STATUSES},
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "provider_task_id": {"type": ["string", "null"]},
            "parent_id": {"type": ["string", "null"]},
            "params": {"type": "object"},
            "result": _ref("Result"),
            "error": _ref("TaskError"),
            "metadata": {},
            "callback_url": {"type": ["string", "null"]},
            "callback_events": {
                "type": "array",
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
            },
            "sequence": {"type": "integer", "description": "bumped by every announced change"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "finished_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "SubmitRequest": {
        "type": "object",
        "required": ["action"],
        "additionalProperties": False,
        "properties": {
            "provider": {"type": "string"},
            "action": {"type": "string", "enum": list(ACTIONS)},
            "params": {"type": "object", "description": "prompt, index (1-4), aspect_ratio, ..."},
            "parent_id": {"type": "string"},
            "callback_url": {"type": "string", "format": "uri"},
            "callback_events": {
                "type": "array",
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
            },
            "metadata": {},
        },
    },
    "ModalRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "prompt": {"type": "string"},
            "mask_url": {"type": "string", "format": "uri"},
            "mask": {"type": "string", "description": "base64 PNG, at most 12 MiB decoded"},
            "speed": {"type": "string", "enum": ["relax", "fast", "turbo"]},
            "metadata": {"type": "object"},
        },
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "task_id": {"type": "string"},
            "source": {"type": "string", "enum": ["callback", "poll", "api", "timer"]},
            "type": {"type": "string"},
            "outcome": {"type": "string", "enum": OUTCOMES},
            "from_status": {"type": "string", "enum": STATUSES},
            "to_status": {"type": ["string", "null"]},
            "progress": {"type": ["integer", "null"]},
            "received_at": {"type": "string", "format": "date-time"},
            "detail": {"type": ["object", "null"]},
        },
    },
    "EndpointRequest": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {
                "type": "array",
                "items": {"type": "string", "enum": list(EVENT_TYPES)},
                "description": "empty: all",
            },
            "description": {"type": "string"},
        },
    },
    "Endpoint": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "description": {"type": ["string", "null"]},
            "disabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "disabled_at": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
            "secret": {"type": "string", "description": "whsec_...; only when created or rotated"},
        },
    },
    "Delivery": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "the webhook-id header, stable across retries"},
            "task_id": {"type": "string"},
            "endpoint_id": {"type": ["string", "null"]},
            "url": {"type": "string"},
            "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
            "sequence": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "last_status": {"type": ["integer", "null"]},
            "last_error": {"type": ["string", "null"]},
            "last_attempt_at": {"type": ["string", "null"]},
            "delivered_at": {"type": ["string", "null"]},
            "created_at": {"type": "string"},
        },
    },
    "TaskPage": _page("Task"),
    "EventPage": _page("Event"),
    "EndpointPage": _page("Endpoint"),
    "DeliveryPage": _page("Delivery"),
}

TASK = _json(_ref("Task"), "The task")
OPEN: list[dict[str, Any]] = []  # no security requirement

PATHS: dict[str, Any] = {
    "/v1/tasks": {
        "post": {
            "summary": "Submit a task (sent to the provider before the answer)",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "schema": {"type": "string", "maxLength": 255},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("SubmitRequest")}},
            },
            "responses": {"202": TASK, **_problems(400, 401, 404, 409, 413, 415, 422, 502, 503)},
        },
        "get": {
            "summary": "List tasks, newest first",
            "parameters": [
                LIMIT,
                CURSOR,
                _query("status", "comma-separated statuses"),
                _query("provider", "provider name"),
                _query("action", "action name"),
                _query("created_after", "RFC 3339", {"type": "string", "format": "date-time"}),
                _query("created_before", "RFC 3339", {"type": "string", "format": "date-time"}),
            ],
            "responses": {"200": _json(_ref("TaskPage"), "A page of tasks"), **_problems(401, 422)},
        },
    },
    "/v1/tasks/{id}": {
        "get": {
            "summary": "A task by jobhook id or provider task id; ?wait long-polls",
            "parameters": [
                ID,
                _query("wait", "seconds (0-120) to wait for the next change", {"type": "number"}),
            ],
            "responses": {"200": TASK, **_problems(401, 404, 422)},
        }
    },
    "/v1/tasks/{id}/events": {
        "get": {
            "summary": "Every observation of the task, oldest first, with its outcome",
            "parameters": [ID, LIMIT, CURSOR],
            "responses": {
                "200": _json(_ref("EventPage"), "A page of events"),
                **_problems(401, 404),
            },
        }
    },
    "/v1/tasks/{id}/cancel": {
        "post": {
            "summary": "Cancel a running task",
            "parameters": [ID],
            "responses": {"200": TASK, **_problems(401, 404, 409)},
        }
    },
    "/v1/tasks/{id}/modal": {
        "post": {
            "summary": "Finish a MODAL task with a mask and a prompt",
            "parameters": [ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ModalRequest")}},
            },
            "responses": {"202": TASK, **_problems(401, 404, 409, 413, 422, 502)},
        }
    },
    "/v1/events/stream": {
        "get": {
            "summary": "Server-sent events of task changes (event: task, data: <task>)",
            "parameters": [
                _query("task_id", "only this task"),
                _query("status", "comma-separated statuses"),
            ],
            "responses": {
                "200": {
                    "description": "An event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_problems(401, 422),
            },
        }
    },
    "/v1/endpoints": {
        "post": {
            "summary": "Register a webhook endpoint (its secret is returned once)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("EndpointRequest")}},
            },
            "responses": {
                "201": _json(_ref("Endpoint"), "The endpoint, with its secret"),
                **_problems(401, 422),
            },
        },
        "get": {
            "summary": "List endpoints",
            "responses": {"200": _json(_ref("EndpointPage"), "Endpoints"), **_problems(401)},
        },
    },
    "/v1/endpoints/{id}": {
        "get": {
            "summary": "An endpoint",
            "parameters": [ID],
            "responses": {"200": _json(_ref("Endpoint"), "The endpoint"), **_problems(401, 404)},
        },
        "delete": {
            "summary": "Delete an endpoint",
            "parameters": [ID],
            "responses": {"204": {"description": "Deleted"}, **_problems(401, 404)},
        },
    },
    "/v1/endpoints/{id}/enable": {
        "post": {
            "summary": "Re-enable a disabled endpoint",
            "parameters": [ID],
            "responses": {"200": _json(_ref("Endpoint"), "The endpoint"), **_problems(401, 404)},
        }
    },
    "/v1/endpoints/{id}/rotate-secret": {
        "post": {
            "summary": "A new secret; the old one keeps signing for 24 h",
            "parameters": [ID],
            "responses": {
                "200": _json(_ref("Endpoint"), "The endpoint, with its new secret"),
                **_problems(401, 404),
            },
        }
    },
    "/v1/deliveries": {
        "get": {
            "summary": "The outbound delivery log",
            "parameters": [
                _query("status", "pending, delivered or dead"),
                _query("task_id", "one task's deliveries"),
                LIMIT,
                CURSOR,
            ],
            "responses": {
                "200": _json(_ref("DeliveryPage"), "A page of deliveries"),
                **_problems(401, 422),
            },
        }
    },
    "/v1/deliveries/{id}/retry": {
        "post": {
            "summary": "Send a delivery again (same webhook-id)",
            "parameters": [ID],
            "responses": {"202": _json(_ref("Delivery"), "The delivery"), **_problems(401, 404)},
        }
    },
    "/v1/callbacks/{provider}/{token}": {
        "post": {
            "summary": "Where providers call back (token-authenticated; never a 3xx)",
            "security": OPEN,
            "parameters": [
                {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "Recorded (applied, duplicate, stale or conflict)"},
                "202": {"description": "An unsigned hint: the task is polled now"},
                **_problems(400, 401, 403, 404, 413, 503),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "The process answers",
            "security": OPEN,
            "responses": {"200": {"description": "OK"}},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Store writable, workers alive, backlog under its limit",
            "security": OPEN,
            "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "security": OPEN,
            "responses": {"200": {"description": "Text exposition format"}},
        }
    },
}


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobhook",
            "version": __version__,
            "description": "A durable, signed bridge between backends and Midjourney-style "
            "generation APIs. Errors are RFC 9457 application/problem+json.",
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": PATHS,
    }


async def openapi(request: Request) -> Response:
    return JSON(spec())


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
