"""The component schemas of `/openapi.json`: the JSON jobhook reads and writes (DESIGN §8).

Request bodies say exactly what the handlers take: unknown fields are refused with a 422, hence
`additionalProperties: false`. Answers list every field the views write and stay open, since
fields may be added (never renamed).
"""

from __future__ import annotations

from typing import Any

from service.domain.models import ACTIONS, EVENT_TYPES
from service.domain.status import Status
from service.providers.apimart_params import SPEEDS
from service.providers.params import (
    MAX_ID_CHARS,
    MAX_ITEMS,
    MAX_OBJECT_BYTES,
    MAX_PARAMS_BYTES,
    MAX_TEXT_CHARS,
)
from service.security.urls import MAX_URL_CHARS
from service.submit import MAX_METADATA_BYTES
from service.web.endpoints import DELIVERY_STATUSES, MAX_DESCRIPTION
from service.web.tasks import PROVIDER_NAMES

STATUSES = [s.value for s in Status]
OUTCOMES = ["applied", "duplicate", "stale", "conflict", "rejected"]
#: what an event's observation claims; `unknown` for one jobhook could not read (rejected)
EVENT_KINDS = ["submitted", "progress", "modal", "succeeded", "failed", "cancelled", "unknown"]
SOURCES = ["callback", "poll", "api", "timer"]
PROVIDERS = list(PROVIDER_NAMES)

STRING = {"type": "string"}
DATE_TIME = {"type": "string", "format": "date-time"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null (JSON Schema 2020-12: a list of types)."""
    return {**schema, "type": [schema["type"], "null"]}


def enum(values: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data", "next_cursor"],
        "properties": {
            "data": {"type": "array", "items": ref(item)},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "pass as `cursor` for the next page; null on the last",
            },
        },
    }


def _required_all(schema: dict[str, Any], *optional: str) -> dict[str, Any]:
    """Every property is always written (as null when empty), except `optional`."""
    return {**schema, "required": [p for p in schema["properties"] if p not in optional]}


PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "examples": ["urn:jobhook:problem:validation"]},
        "title": STRING,
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": STRING,
        "instance": STRING,
        "request_id": STRING,
        "errors": {
            "type": "array",
            "description": "the fields at fault",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": STRING, "message": STRING},
            },
        },
        "task_id": {"type": "string", "description": "the task kept for the record"},
        "provider_status": {"type": "integer", "description": "the provider's HTTP status"},
        "provider_code": {"type": "string", "description": "the provider's error code"},
        "retry_after": {"type": "integer", "description": "seconds, as in Retry-After"},
    },
}

TASK = _required_all(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "examples": ["task_01M7ZS3GYSXE146SFY5TVYS1G3"]},
            "provider": enum(PROVIDERS),
            "action": enum(ACTIONS),
            "status": enum(STATUSES),
            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
            "provider_task_id": nullable(STRING),
            "parent_id": nullable(STRING),
            "params": {"type": "object"},
            "result": {
                "type": ["object", "null"],
                "description": "what the task produced; null until the provider says",
                "properties": {
                    "images": {"type": "array", "items": STRING},
                    "grid_url": nullable(STRING),
                    "videos": {"type": "array", "items": STRING},
                    "actions": {
                        "type": "array",
                        "items": {"type": "object"},
                        "description": "the provider's buttons for follow-ups (APIMart: "
                        "{label, custom_id}; pass custom_id to a follow-up)",
                    },
                    "cost": {
                        "type": ["object", "null"],
                        "description": "what the provider billed: Apiframe {credits}, Vtrix "
                        "{usd, discount} (its usage)",
                    },
                    "prompts": {
                        "type": "array",
                        "items": STRING,
                        "description": "describe: the prompts the provider suggests",
                    },
                    "expires_at": {
                        **nullable(DATE_TIME),
                        "description": "when the result URLs stop working, where the provider "
                        "says (APIMart's expires_at; Apiframe: 24 h after completion)",
                    },
                    "provider_metadata": {
                        "type": ["object", "null"],
                        "description": "the provider's own metadata of the task (Vtrix)",
                    },
                },
            },
            "error": {
                "type": ["object", "null"],
                "required": ["code", "message", "provider_code"],
                "properties": {
                    "code": STRING,
                    "message": STRING,
                    "provider_code": nullable(STRING),
                },
            },
            "metadata": {"description": "as the client sent it"},
            "callback_url": nullable(STRING),
            "callback_events": {"type": "array", "items": enum(EVENT_TYPES)},
            "sequence": {"type": "integer", "description": "bumped by every announced change"},
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
            "finished_at": nullable(DATE_TIME),
            "queued": {
                "type": "boolean",
                "description": "accepted and waiting in jobhook's submission queue for the "
                "provider to take it (status NOT_START): its concurrency, rate or a 429",
            },
        },
    }
)

CANCELLED_TASK = {
    "allOf": [
        ref("Task"),
        {
            "type": "object",
            "required": ["provider_cancelled", "provider_cancel_detail"],
            "properties": {
                "provider_cancelled": {
                    "type": "boolean",
                    "description": "the provider confirmed it cancelled the task; false where "
                    "it documents no way to (APIMart, Apiframe, Vtrix): it keeps working on "
                    "the task and may bill for it",
                },
                "provider_cancel_detail": {"type": "string", "description": "what happened there"},
            },
        },
    ]
}

#: An absolute http(s) URL (the scheme in any case), without blanks; its host must be, and
#: resolve to, a public address (or one JOBHOOK_OUTBOUND_ALLOW opens), else a 422.
HTTP_URL = {
    "type": "string",
    "maxLength": MAX_URL_CHARS,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://\\S+$",
    "description": "an absolute http(s) URL to a public host",
}
#: `data:` (any case): a base64 image, which only the body's size limit bounds
DATA_URL = {"type": "string", "pattern": "^[Dd][Aa][Tt][Aa]:"}
TEXT = {"type": "string", "maxLength": MAX_TEXT_CHARS}
#: What `params` may hold, whatever the provider (`providers.params.bounded`); each provider
#: then checks its own names and values.
PARAM_VALUE = {
    "anyOf": [
        TEXT,
        DATA_URL,
        {"type": ["number", "boolean", "null"]},
        {"type": "object", "description": f"at most {MAX_OBJECT_BYTES} bytes of JSON"},
        {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {
                "anyOf": [
                    TEXT,
                    DATA_URL,
                    {"type": ["number", "boolean"]},
                    {"type": "object", "description": f"at most {MAX_OBJECT_BYTES} bytes"},
                ]
            },
        },
    ]
}
PARAMS = {
    "type": "object",
    "description": "the action's parameters (prompt, index, aspect_ratio, image_urls, ...), "
    f"at most {MAX_PARAMS_BYTES} bytes of JSON, images aside",
    "properties": {
        "index": {"type": "integer", "minimum": 1, "maximum": 4},
        "mask": {"type": "string", "description": "base64 PNG"},
        "image_urls": {
            "type": "array",
            "maxItems": MAX_ITEMS,
            "items": {"anyOf": [HTTP_URL, DATA_URL]},
            "description": "http(s) URLs; APIMart also takes images inline, as "
            "data:image/(png|jpeg|webp|gif);base64,... of at most 12 MiB each (never stored)",
        },
    },
    "additionalProperties": PARAM_VALUE,
}

SUBMIT_REQUEST = {
    "type": "object",
    "required": ["action"],
    "additionalProperties": False,
    "properties": {
        "provider": {**nullable(enum(PROVIDERS)), "enum": [*PROVIDERS, None]},
        "action": enum(ACTIONS),
        "params": PARAMS,
        "parent_id": {"type": ["string", "null"], "maxLength": MAX_ID_CHARS},
        "callback_url": nullable(HTTP_URL),
        "callback_events": {"type": "array", "items": enum(EVENT_TYPES)},
        "metadata": {"description": f"any JSON, at most {MAX_METADATA_BYTES} bytes of it"},
    },
    "examples": [
        {"action": "imagine", "params": {"prompt": "a red fox in snow", "aspect_ratio": "16:9"}}
    ],
}

MODAL_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "description": "mask_url or mask, not both; without either APIMart outpaints",
    "properties": {
        "prompt": nullable(TEXT),
        "mask_url": {
            "anyOf": [HTTP_URL, DATA_URL, {"type": "null"}],
            "description": "an http(s) URL, or a data:image/png;base64, URL",
        },
        "mask": {"type": ["string", "null"], "description": "base64 PNG, at most 12 MiB decoded"},
        "speed": {"type": ["string", "null"], "enum": [*sorted(SPEEDS), None]},
        "metadata": {
            "type": ["object", "null"],
            "description": f"at most {MAX_OBJECT_BYTES} bytes of JSON",
        },
    },
    "examples": [{"prompt": "a red leather sofa", "mask_url": "https://cdn.example/mask.png"}],
}

EVENT = _required_all(
    {
        "type": "object",
        "properties": {
            "id": STRING,
            "task_id": STRING,
            "source": enum(SOURCES),
            "type": enum(EVENT_KINDS),
            "outcome": enum(OUTCOMES),
            "from_status": enum(STATUSES),
            "to_status": {"type": ["string", "null"], "enum": [*STATUSES, None]},
            "progress": {"type": ["integer", "null"]},
            "received_at": DATE_TIME,
            "detail": {"type": ["object", "null"]},
            "repeats": {
                "type": "integer",
                "minimum": 0,
                "description": "later replays of this same delivery, counted",
            },
        },
    },
    "repeats",
)

ENDPOINT_REQUEST = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": HTTP_URL,
        "events": {
            "type": "array",
            "items": enum(EVENT_TYPES),
            "description": "empty: all",
        },
        "description": nullable({"type": "string", "maxLength": MAX_DESCRIPTION}),
    },
    "examples": [{"url": "https://backend.example.com/hooks/jobhook", "events": ["task.failed"]}],
}

ENDPOINT = _required_all(
    {
        "type": "object",
        "properties": {
            "id": STRING,
            "url": STRING,
            "events": {"type": "array", "items": enum(EVENT_TYPES)},
            "description": nullable(STRING),
            "disabled": {"type": "boolean"},
            "disabled_reason": nullable(STRING),
            "disabled_at": nullable(DATE_TIME),
            "created_at": DATE_TIME,
            "attempts_ok": {"type": "integer", "minimum": 0, "description": "2xx attempts"},
            "attempts_failed": {"type": "integer", "minimum": 0, "description": "failed attempts"},
            "success_rate": {
                "type": ["number", "null"],
                "minimum": 0,
                "maximum": 1,
                "description": "attempts_ok over all attempts (null before the first)",
            },
            "last_failure_at": nullable(DATE_TIME),
            "last_failure": nullable(STRING),
            "secret": {"type": "string", "description": "whsec_...; only when created or rotated"},
        },
    },
    "secret",
)

DELIVERY = _required_all(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "the webhook-id header, stable across retries"},
            "task_id": STRING,
            "endpoint_id": nullable(STRING),
            "url": STRING,
            "event_type": enum(EVENT_TYPES),
            "sequence": {"type": "integer"},
            "status": enum(DELIVERY_STATUSES),
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": {"type": ["integer", "null"]},
            "last_error": nullable(STRING),
            "last_attempt_at": nullable(DATE_TIME),
            "delivered_at": nullable(DATE_TIME),
            "created_at": DATE_TIME,
            "next_attempt_at": {
                **nullable(DATE_TIME),
                "description": "when the next attempt is due (pending only)",
            },
        },
    }
)

DELIVERY_ATTEMPT = _required_all(
    {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer", "minimum": 1},
            "at": DATE_TIME,
            "duration_ms": {"type": ["number", "null"]},
            "http_status": {"type": ["integer", "null"]},
            "response": {**nullable(STRING), "description": "the answer's first 512 bytes"},
            "error": nullable(STRING),
        },
    }
)

DELIVERY_DETAIL = {
    "allOf": [
        ref("Delivery"),
        {
            "type": "object",
            "required": ["body", "attempt_history"],
            "properties": {
                "body": {"type": "string", "description": "the exact body signed and sent"},
                "attempt_history": {
                    "type": "array",
                    "items": ref("DeliveryAttempt"),
                    "description": "the last 20 attempts, oldest first",
                },
            },
        },
    ]
}

CALLBACK_ANSWER = {
    "type": "object",
    "required": ["ok", "outcomes"],
    "properties": {
        "ok": {"type": "boolean"},
        "outcomes": {"type": "array", "items": enum([*OUTCOMES, "deferred"])},
    },
}

SCHEMAS: dict[str, Any] = {
    "Problem": PROBLEM,
    "Task": TASK,
    "CancelledTask": CANCELLED_TASK,
    "SubmitRequest": SUBMIT_REQUEST,
    "ModalRequest": MODAL_REQUEST,
    "Event": EVENT,
    "EndpointRequest": ENDPOINT_REQUEST,
    "Endpoint": ENDPOINT,
    "Delivery": DELIVERY,
    "DeliveryAttempt": DELIVERY_ATTEMPT,
    "DeliveryDetail": DELIVERY_DETAIL,
    "CallbackAnswer": CALLBACK_ANSWER,
    "TaskPage": _page("Task"),
    "EventPage": _page("Event"),
    "EndpointPage": _page("Endpoint"),
    "DeliveryPage": _page("Delivery"),
}
