"""The `/mj` operations and schemas of `/openapi.json` (tag `midjourney-proxy`): the front that
speaks midjourney-proxy's API (service/web/mj.py), written out like the rest."""

from __future__ import annotations

from typing import Any

from service.web.mj import BODIES, CODES, MAX_IDS
from service.web.openapi_paths import LIMIT, Codes, _json, _op, _path, _query
from service.web.openapi_schemas import STATUSES, STRING, enum, ref

TAG = "midjourney-proxy"
#: the security of an /mj operation where API keys are set: the key in `mj-api-secret`, or
#: as everywhere in `Authorization: Bearer`
SECURITY: list[dict[str, list[str]]] = [{"mjApiSecret": []}, {"bearer": []}]
SECURITY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "mj-api-secret",
    "description": "a jobhook API key (JOBHOOK_API_KEYS), as midjourney-proxy's mj-api-secret",
}

_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": ["string", "null"]},
    "array": {"type": ["array", "null"], "items": {"type": "string"}},
    "integer": {"type": ["integer", "null"]},
}
_DESCRIPTIONS = {
    "prompt": "the prompt (required for imagine; blank is code 4)",
    "base64Array": "images as data:image/...;base64, URLs (or http(s) URLs)",
    "base64": "an image as a data:image/...;base64, URL",
    "botType": "MID_JOURNEY or NIJI_JOURNEY (NIJI adds --niji to the prompt)",
    "notifyHook": "a URL that hears every change of the task, in the MjTask shape",
    "state": "your own value, echoed on the task",
    "taskId": "the task acted on",
    "action": "UPSCALE, VARIATION or REROLL",
    "index": "the image, 1 to 4 (not for REROLL)",
    "content": "'<taskId> U1..U4', '<taskId> V1..V4' or '<taskId> R'",
    "customId": "one of the task's buttons' customId",
    "maskBase64": "the inpaint mask, a PNG as base64 (a data:image/png;base64, prefix allowed)",
    "dimensions": "PORTRAIT, SQUARE or LANDSCAPE",
}


def _request(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "other fields midjourney-proxy takes are ignored; a field of the wrong "
        "JSON type answers 400 with code 4",
        "properties": {
            name: {**_TYPES[kind_of], "description": _DESCRIPTIONS.get(name, name)}
            for name, kind_of in BODIES[kind].items()
        },
    }


NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_MS = {"type": ["integer", "null"], "description": "epoch milliseconds"}
SCHEMAS: dict[str, Any] = {
    "MjSubmitResult": {
        "type": "object",
        "required": ["code", "description", "result", "properties"],
        "properties": {
            "code": {
                "type": "integer",
                "enum": [*CODES, 24],
                "description": "1 submitted, 3 not found, 4 validation error, 9 failure, 21 "
                "waiting for the modal window, 22 queued, 23 provider busy (retry), 24 banned "
                "prompt",
            },
            "description": STRING,
            "result": {**NULLABLE_STRING, "description": "the task id"},
            "properties": {"type": "object"},
        },
    },
    "MjButton": {
        "type": "object",
        "required": ["customId", "emoji", "label", "type", "style"],
        "properties": {
            "customId": STRING,
            "emoji": STRING,
            "label": STRING,
            "type": {"type": "integer"},
            "style": {"type": "integer"},
        },
    },
    "MjTask": {
        "type": "object",
        "required": [
            "id",
            "action",
            "status",
            "prompt",
            "promptEn",
            "description",
            "state",
            "submitTime",
            "startTime",
            "finishTime",
            "imageUrl",
            "progress",
            "failReason",
            "buttons",
            "properties",
        ],
        "properties": {
            "id": STRING,
            "action": {**STRING, "description": "IMAGINE, UPSCALE, VARIATION, REROLL, ..."},
            "status": enum(STATUSES),
            "prompt": STRING,
            "promptEn": STRING,
            "description": STRING,
            "state": NULLABLE_STRING,
            "submitTime": NULLABLE_MS,
            "startTime": NULLABLE_MS,
            "finishTime": NULLABLE_MS,
            "imageUrl": NULLABLE_STRING,
            "progress": {"type": "string", "pattern": "^[0-9]+%$"},
            "failReason": NULLABLE_STRING,
            "buttons": {"type": "array", "items": ref("MjButton")},
            "properties": {
                "type": "object",
                "description": "finalPrompt, notifyHook, relatedTaskId, imageUrls, "
                "jobhookTaskId, provider",
            },
        },
    },
    "MjListByCondition": {
        "type": "object",
        "properties": {
            "ids": {
                "type": ["array", "null"],
                "maxItems": MAX_IDS,
                "items": {"type": "string", "minLength": 1, "maxLength": 128},
            }
        },
    },
    **{f"Mj{kind.title().replace('-', '')}Request": _request(kind) for kind in BODIES},
}

SUBMIT_RESULT = _json(ref("MjSubmitResult"), "midjourney-proxy's answer: see `code`")
BAD_FIELD = {
    "description": "A field of the wrong JSON type (code 4, naming it), or a body that could "
    "not be read (problem+json)",
    "content": {
        "application/json": {"schema": ref("MjSubmitResult")},
        "application/problem+json": {"schema": ref("Problem")},
    },
}
UNKNOWN_PARAM = (422, "An unknown query parameter")
UPLOAD_LIMIT = (413, "The body is larger than the limit (JOBHOOK_MAX_UPLOAD_BYTES)")
STORE = (503, "The store could not commit or be read; retry")


def _submit(kind: str, summary: str) -> dict[str, tuple[dict[str, Any], Codes]]:
    name = kind.title().replace("-", "")
    op, codes = _op(
        f"mjSubmit{name}",
        summary,
        {"200": SUBMIT_RESULT, "400": BAD_FIELD},
        (UPLOAD_LIMIT, UNKNOWN_PARAM, STORE),
        body=f"Mj{name}Request",
    )
    return {"post": ({**op, "tags": [TAG]}, codes)}


def _tagged(op: tuple[dict[str, Any], Codes]) -> tuple[dict[str, Any], Codes]:
    return {**op[0], "tags": [TAG]}, op[1]


TASK_LIST = _json({"type": "array", "items": ref("MjTask")}, "The tasks, in the MjTask shape")
OPERATIONS: dict[str, dict[str, tuple[dict[str, Any], Codes]]] = {
    "/mj/submit/imagine": _submit("imagine", "midjourney-proxy: submit an imagine"),
    "/mj/submit/change": _submit("change", "midjourney-proxy: UPSCALE, VARIATION or REROLL"),
    "/mj/submit/simple-change": _submit("simple-change", "midjourney-proxy: '<taskId> U2'"),
    "/mj/submit/action": _submit(
        "action", "midjourney-proxy: press a button (Inpaint, CustomZoom answer code 21: MODAL)"
    ),
    "/mj/submit/modal": _submit("modal", "midjourney-proxy: finish a MODAL task"),
    "/mj/submit/blend": _submit("blend", "midjourney-proxy: blend 2 to 5 images"),
    "/mj/submit/describe": _submit("describe", "midjourney-proxy: describe an image"),
    "/mj/task/{id}/fetch": {
        "get": _tagged(
            _op(
                "mjFetchTask",
                "midjourney-proxy: one task",
                {"200": _json(ref("MjTask"), "The task, in the MjTask shape")},
                ((404, "No such task (or not yours)"), UNKNOWN_PARAM, STORE),
                params=(_path("id"),),
            )
        )
    },
    "/mj/task/list": {
        "get": _tagged(
            _op(
                "mjListTasks",
                "midjourney-proxy: the tasks, newest first (paged: X-Next-Cursor)",
                {
                    "200": {
                        **TASK_LIST,
                        "headers": {
                            "X-Next-Cursor": {
                                "description": "pass as `cursor` for the next page",
                                "schema": STRING,
                            }
                        },
                    }
                },
                ((422, "A query parameter is not valid, or not known"), STORE),
                params=(LIMIT, _query("cursor", "X-Next-Cursor of the previous page")),
            )
        )
    },
    "/mj/task/list-by-condition": {
        "post": _tagged(
            _op(
                "mjListByCondition",
                "midjourney-proxy: the tasks of these ids (unknown ids are left out)",
                {"200": TASK_LIST},
                (
                    (400, "The body could not be read"),
                    UPLOAD_LIMIT,
                    (422, "ids is not a list of task ids, or an unknown query parameter"),
                    STORE,
                ),
                body="MjListByCondition",
            )
        )
    },
    "/mj/task/{id}/cancel": {
        "post": _tagged(
            _op(
                "mjCancelTask",
                "midjourney-proxy: cancel a task (code 3: no such task, 4: it has ended)",
                {"200": SUBMIT_RESULT},
                (UNKNOWN_PARAM, STORE),
                params=(_path("id"),),
            )
        )
    },
}
