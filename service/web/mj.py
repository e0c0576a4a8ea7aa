"""A midjourney-proxy compatible front: `/mj/...` onto the same tasks (a front, not an engine).

Every submission goes through `service.submit` (`parse_submit` then `submit`), every modal call
and cancel through `service.actions`: this module only translates bodies and answers. The
shapes follow midjourney-proxy's own source:

- novicezk/midjourney-proxy src/main/java/com/github/novicezk/midjourney/ReturnCode.java (the
  codes: 1 success, 3 not found, 4 validation error, 9 failure, 21 existed / waiting for the
  modal window, 22 in queue, 23 queue full, 24 banned prompt);
- .../controller/SubmitController.java (`/submit/imagine`, `/change`, `/simple-change`,
  `/describe`, `/blend`: the `{code, description, result, properties}` answer, SubmitResultVO,
  with `description` "<field>..." for a bad field, and `description` "/imagine <prompt>",
  "/up <taskId> U2" on the task);
- .../controller/TaskController.java (`/task/{id}/fetch`, `/task/list`,
  `/task/list-by-condition {ids}`);
- the action API of midjourney-proxy-plus (litter-coder/midjourney-proxy-plus,
  trueai-org/midjourney-proxy): `/submit/action {taskId, customId}`, `/submit/modal {taskId,
  prompt, maskBase64}`, code 21 for a button that opens a modal window (Inpaint, CustomZoom),
  `/task/{id}/cancel`.

The `mj-api-secret` header carries a jobhook API key (with no keys set, development mode needs
none; `Authorization: Bearer` works as well). A bad field answers their shape with code 4 and a
description naming the field: HTTP 400 when the JSON type is wrong (what their Spring binding
refuses), HTTP 200 otherwise (as they answer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import actions
from service.domain.mj import MARK, buttons, mj_task
from service.domain.models import DEFAULT_CALLBACK_EVENTS, EVENT_TYPES
from service.domain.status import Status
from service.errors import (
    Conflict,
    JobhookError,
    NotFound,
    ProviderBusy,
    ProviderRejected,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)
from service.services import Services
from service.store.base import TaskQuery
from service.submit import parse_submit, submit
from service.web.problems import JSON
from service.web.requests import (
    auth_failed,
    authenticate,
    check_auth_throttle,
    cursor_param,
    limit_param,
    only_params,
    owner_for_key,
    read_json_object,
)

#: midjourney-proxy's return codes (ReturnCode.java)
SUCCESS, NOT_FOUND, VALIDATION_ERROR, FAILURE = 1, 3, 4, 9
EXISTED, IN_QUEUE, QUEUE_REJECTED, BANNED_PROMPT = 21, 22, 23, 24
CODES = (SUCCESS, NOT_FOUND, VALIDATION_ERROR, FAILURE, EXISTED, IN_QUEUE, QUEUE_REJECTED)
BOT_TYPES = ("MID_JOURNEY", "NIJI_JOURNEY")
CHANGE_ACTIONS = ("UPSCALE", "VARIATION", "REROLL")
#: At most this many ids in one list-by-condition.
MAX_IDS = 500
#: `<taskId> U2`, `<taskId> V1`, `<taskId> R` (SubmitSimpleChangeDTO's content)
_SIMPLE_CHANGE = re.compile(r"\s*(\S+)\s+(?:([UV])([1-4])|(R))\s*", re.ASCII)
_PANS = ("left", "right", "up", "down")

#: jobhook's field names (in a ValidationFailed) -> the midjourney-proxy field they came from
FIELD_NAMES: Mapping[str, str] = {
    "params.prompt": "prompt",
    "params.image_urls": "base64Array",
    "params.dimensions": "dimensions",
    "params.index": "index",
    "params.custom_id": "customId",
    "params.mask": "maskBase64",
    "params.mask_url": "maskBase64",
    "mask": "maskBase64",
    "mask_url": "maskBase64",
    "callback_url": "notifyHook",
    "parent_id": "taskId",
    "metadata": "state",
}

#: The fields each body may hold, by JSON type (null is always allowed: absent); others ignored.
STRING, ARRAY, INTEGER = "string", "array", "integer"
BODIES: Mapping[str, Mapping[str, str]] = {
    "imagine": {
        "prompt": STRING,
        "base64Array": ARRAY,
        "base64": STRING,
        "botType": STRING,
        "notifyHook": STRING,
        "state": STRING,
    },
    "change": {
        "taskId": STRING,
        "action": STRING,
        "index": INTEGER,
        "notifyHook": STRING,
        "state": STRING,
    },
    "simple-change": {"content": STRING, "notifyHook": STRING, "state": STRING},
    "action": {"taskId": STRING, "customId": STRING, "notifyHook": STRING, "state": STRING},
    "modal": {"taskId": STRING, "prompt": STRING, "maskBase64": STRING},
    "blend": {
        "base64Array": ARRAY,
        "dimensions": STRING,
        "botType": STRING,
        "notifyHook": STRING,
        "state": STRING,
    },
    "describe": {"base64": STRING, "botType": STRING, "notifyHook": STRING, "state": STRING},
}


class _Refused(Exception):
    """An answer in midjourney-proxy's shape that is not a success."""

    def __init__(self, code: int, description: str, http_status: int = 200, **properties: Any):
        super().__init__(description)
        self.code = code
        self.description = description
        self.http_status = http_status
        self.properties = properties


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def owner_of(request: Request, api_keys: Mapping[str, str]) -> str:
    """The owner of the `mj-api-secret` key (or of `Authorization: Bearer`, as elsewhere)."""
    secret = request.headers.get("mj-api-secret")
    if not api_keys or (secret is None and "authorization" in request.headers):
        return authenticate(request, api_keys)
    if secret is None or not secret.strip():
        raise Unauthorized("send mj-api-secret: <API key>")
    owner = owner_for_key(secret.strip(), api_keys)
    if owner is None:
        check_auth_throttle(request)
        auth_failed(request, "bad_key")
        raise Unauthorized("the mj-api-secret is not a valid API key")
    return owner


def answer(
    code: int,
    description: str,
    result: str | None = None,
    properties: Mapping[str, Any] | None = None,
    status: int = 200,
) -> Response:
    return JSON(
        {
            "code": code,
            "description": description,
            "result": result,
            "properties": dict(properties or {}),
        },
        status,
    )


def _field(name: str, overrides: Mapping[str, str]) -> str:
    """The midjourney-proxy name of a field jobhook named (`params.image_urls[1]` ->
    `base64Array[1]`)."""
    base, bracket, rest = name.partition("[")
    mapped = overrides.get(base) or FIELD_NAMES.get(base) or base.removeprefix("params.")
    return mapped + (bracket + rest if bracket else "")


async def _body(request: Request, svc: Services, kind: str) -> dict[str, Any]:
    """The body's known fields, each of the JSON type midjourney-proxy binds (null: absent)."""
    only_params(request, ())
    body = await read_json_object(request, svc.settings.max_upload_bytes)
    fields: dict[str, Any] = {}
    for name, kind_of in BODIES[kind].items():
        value = body.get(name)
        if value is None:
            continue
        ok = {
            STRING: isinstance(value, str),
            ARRAY: isinstance(value, list) and all(isinstance(v, str) for v in value),
            INTEGER: isinstance(value, int) and not isinstance(value, bool),
        }[kind_of]
        if not ok:
            wanted = {STRING: "a string", ARRAY: "a list of strings", INTEGER: "an integer"}
            raise _Refused(VALIDATION_ERROR, f"{name}: expected {wanted[kind_of]}", 400)
        fields[name] = value
    return fields


def _mark(fields: Mapping[str, Any], description: str, prompt: str | None = None) -> dict[str, Any]:
    mark: dict[str, Any] = {
        "description": description,
        "state": fields.get("state"),
        "notify_hook": bool(fields.get("notifyHook")),
    }
    if fields.get("botType"):
        mark["bot_type"] = fields["botType"]
    if prompt:
        mark["prompt"] = prompt
    return mark


async def _submit(
    svc: Services,
    owner: str,
    fields: Mapping[str, Any],
    action: str,
    params: dict[str, Any],
    mark: dict[str, Any],
    *,
    parent_id: str | None = None,
) -> Response:
    """One ordinary jobhook task through `submit`, answered in midjourney-proxy's shape."""
    hook = fields.get("notifyHook") or None
    body: dict[str, Any] = {
        "action": action,
        "params": params,
        "metadata": {MARK: mark},
        # a notifyHook hears every change, as midjourney-proxy calls it on each
        "callback_events": list(EVENT_TYPES if hook else DEFAULT_CALLBACK_EVENTS),
    }
    if hook:
        body["callback_url"] = hook
    if parent_id is not None:
        body["parent_id"] = parent_id
    task, _ = await submit(svc, owner, parse_submit(body))
    return _accepted(task)


def _accepted(task: Mapping[str, Any]) -> Response:
    properties = {"status": task["status"], "jobhookTaskId": task["id"]}
    if task["status"] == Status.MODAL:
        return answer(EXISTED, "Waiting for window confirm", task["id"], properties)
    if task["status"] == Status.NOT_START:  # queued: jobhook sends it to the provider shortly
        return answer(IN_QUEUE, "In queue", task["id"], properties)
    if task["status"] in (Status.FAILURE, Status.CANCEL):
        error = task.get("error") or {}
        return answer(FAILURE, error.get("message") or "Failure", task["id"], properties)
    return answer(SUCCESS, "Submit success", task["id"], properties)


def _refusal(exc: JobhookError, overrides: Mapping[str, str]) -> _Refused:
    """A jobhook error as midjourney-proxy's answer."""
    if isinstance(exc, ValidationFailed):
        return _Refused(VALIDATION_ERROR, f"{_field(exc.field, overrides)}: {exc.message}")
    if isinstance(exc, NotFound):
        return _Refused(NOT_FOUND, exc.detail)
    if isinstance(exc, Conflict):
        return _Refused(VALIDATION_ERROR, exc.detail)
    if isinstance(exc, ProviderBusy):
        return _Refused(QUEUE_REJECTED, exc.detail)
    if isinstance(exc, ProviderRejected):
        return _Refused(FAILURE, exc.detail, task_id=exc.extra.get("task_id"))
    return _Refused(FAILURE, exc.detail, task_id=exc.extra.get("task_id"))


async def _run(request: Request, kind: str, overrides: Mapping[str, str] | None = None) -> Response:
    svc = _services(request)
    owner = owner_of(request, svc.settings.api_keys)
    try:
        try:
            fields = await _body(request, svc, kind)
            return await HANDLERS[kind](svc, owner, fields)
        except StoreUnavailable:
            raise
        except ValidationFailed as exc:
            if exc.field in request.query_params:  # an unknown query parameter: jobhook's 422
                raise
            raise _refusal(exc, overrides or {}) from None
        except (NotFound, Conflict, ProviderRejected) as exc:
            raise _refusal(exc, overrides or {}) from None
        except JobhookError as exc:
            if exc.status in (400, 401, 403, 413, 415, 429):
                raise
            raise _refusal(exc, overrides or {}) from None
    except _Refused as refused:
        task_id = refused.properties.pop("task_id", None)
        return answer(
            refused.code, refused.description, task_id, refused.properties, refused.http_status
        )


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Refused(VALIDATION_ERROR, f"{name}: must not be blank")
    return value.strip()


def _bot_type(fields: Mapping[str, Any]) -> str | None:
    bot = fields.get("botType")
    if bot is not None and bot not in BOT_TYPES:
        raise _Refused(VALIDATION_ERROR, f"botType: expected one of {', '.join(BOT_TYPES)}")
    return bot if isinstance(bot, str) else None


async def _imagine(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    prompt = _text(fields, "prompt")
    if _bot_type(fields) == "NIJI_JOURNEY" and "--niji" not in prompt:
        prompt += " --niji"  # midjourney-proxy's niji bot: Midjourney's --niji model
    params: dict[str, Any] = {"prompt": prompt}
    images = list(fields.get("base64Array") or [])
    if fields.get("base64"):
        images.insert(0, fields["base64"])
    if images:
        params["image_urls"] = images
    mark = _mark(fields, f"/imagine {fields['prompt']}")
    return await _submit(svc, owner, fields, "imagine", params, mark)


async def _parent(svc: Services, owner: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    ref = _text(fields, "taskId")
    parent = await svc.store.get_task(ref, owner=owner)
    if parent is None:
        raise _Refused(NOT_FOUND, f"taskId: no task {ref}")
    return parent


def _prompt_of(task: Mapping[str, Any]) -> str | None:
    prompt = (task.get("params") or {}).get("prompt")
    if isinstance(prompt, str):
        return prompt
    mark = (task.get("metadata") or {}).get(MARK)
    return mark.get("prompt") if isinstance(mark, dict) else None


async def _change(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    action = fields.get("action")
    if action not in CHANGE_ACTIONS:
        raise _Refused(VALIDATION_ERROR, f"action: expected one of {', '.join(CHANGE_ACTIONS)}")
    index = fields.get("index")
    params: dict[str, Any] = {}
    if action != "REROLL":
        if not isinstance(index, int) or not 1 <= index <= 4:
            raise _Refused(VALIDATION_ERROR, "index: expected an integer from 1 to 4")
        params["index"] = index
    parent = await _parent(svc, owner, fields)
    suffix = "R" if action == "REROLL" else f"{action[0]}{index}"
    mark = _mark(fields, f"/up {parent['id']} {suffix}", _prompt_of(parent))
    return await _submit(svc, owner, fields, action.lower(), params, mark, parent_id=parent["id"])


async def _simple_change(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    match = _SIMPLE_CHANGE.fullmatch(fields.get("content") or "")
    if match is None:
        raise _Refused(VALIDATION_ERROR, "content: expected '<taskId> U1..U4', 'V1..V4' or 'R'")
    ref, kind, number, reroll = match.groups()
    change: dict[str, Any] = {**fields, "taskId": ref}
    if reroll:
        change["action"] = "REROLL"
    else:
        change |= {"action": "UPSCALE" if kind == "U" else "VARIATION", "index": int(number)}
    return await _change(svc, owner, change)


def custom_action(custom_id: str) -> tuple[str, dict[str, Any]] | None:
    """The jobhook action (and params) of one of Midjourney's button ids, as midjourney-proxy
    reads them (`MJ::JOB::upsample::2::<hash>`, `MJ::Inpaint::1::<hash>::SOLO`, ...)."""
    parts = custom_id.split("::")
    if len(parts) < 3 or parts[0] != "MJ":
        return None
    index = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 1
    if parts[1] == "JOB":
        kind = parts[2]
        if kind == "upsample":
            return "upscale", {"index": index}
        if kind in ("variation", "high_variation", "low_variation"):
            return kind, {"index": index}
        if kind == "reroll":
            return "reroll", {}
        if kind.startswith("pan_") and kind[4:] in _PANS:
            return "pan", {"direction": kind[4:]}
        return None
    if parts[1] == "Outpaint" and parts[2] in ("50", "75"):
        return "zoom", {"zoom_ratio": 2.0 if parts[2] == "50" else 1.5}
    if parts[1] == "Inpaint":
        return "inpaint", {}
    if parts[1] == "CustomZoom":
        return "zoom", {}
    return None


async def _action(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    custom_id = _text(fields, "customId")
    parent = await _parent(svc, owner, fields)
    shown = {b["customId"] for b in buttons(parent)}
    if custom_id not in shown:
        raise _Refused(VALIDATION_ERROR, f"customId: not a button of task {parent['id']}")
    found = custom_action(custom_id)
    if found is None:
        raise _Refused(VALIDATION_ERROR, f"customId: {custom_id!r} is not supported by jobhook")
    action, params = found
    provided = {b.get("custom_id") for b in (parent.get("result") or {}).get("actions") or []}
    if custom_id in provided:  # the provider's own button: it is told which one
        params["custom_id"] = custom_id
    mark = _mark(fields, f"/action {parent['id']} {custom_id}", _prompt_of(parent))
    return await _submit(svc, owner, fields, action, params, mark, parent_id=parent["id"])


async def _modal(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    ref = _text(fields, "taskId")
    body: dict[str, Any] = {}
    if fields.get("prompt"):
        body["prompt"] = fields["prompt"]
    if fields.get("maskBase64"):
        body["mask"] = fields["maskBase64"]
    task = await actions.modal(svc, owner, ref, body)
    return _accepted(task)


async def _blend(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    _bot_type(fields)
    images = fields.get("base64Array") or []
    if not 2 <= len(images) <= 5:
        raise _Refused(VALIDATION_ERROR, "base64Array: expected 2 to 5 images")
    params: dict[str, Any] = {"image_urls": images}
    if fields.get("dimensions"):
        params["dimensions"] = fields["dimensions"]
    mark = _mark(fields, f"/blend {len(images)}")
    return await _submit(svc, owner, fields, "blend", params, mark)


async def _describe(svc: Services, owner: str, fields: Mapping[str, Any]) -> Response:
    _bot_type(fields)
    image = _text(fields, "base64")
    mark = _mark(fields, "/describe")
    return await _submit(svc, owner, fields, "describe", {"image_urls": [image]}, mark)


HANDLERS = {
    "imagine": _imagine,
    "change": _change,
    "simple-change": _simple_change,
    "action": _action,
    "modal": _modal,
    "blend": _blend,
    "describe": _describe,
}


async def submit_imagine(request: Request) -> Response:
    return await _run(request, "imagine")


async def submit_change(request: Request) -> Response:
    return await _run(request, "change")


async def submit_simple_change(request: Request) -> Response:
    return await _run(request, "simple-change", {"parent_id": "content"})


async def submit_action(request: Request) -> Response:
    return await _run(request, "action")


async def submit_modal(request: Request) -> Response:
    return await _run(request, "modal", {"prompt": "prompt"})


async def submit_blend(request: Request) -> Response:
    return await _run(request, "blend")


async def submit_describe(request: Request) -> Response:
    return await _run(request, "describe", {"params.image_urls": "base64"})


# --- queries -------------------------------------------------------------------------------


async def fetch_task(request: Request) -> Response:
    svc = _services(request)
    owner = owner_of(request, svc.settings.api_keys)
    only_params(request, ())
    ref = request.path_params["id"]
    task = await svc.store.get_task(ref, owner=owner)
    if task is None:
        raise NotFound(f"no task {ref}")
    return JSON(mj_task(task))


async def list_by_condition(request: Request) -> Response:
    svc = _services(request)
    owner = owner_of(request, svc.settings.api_keys)
    only_params(request, ())
    body = await read_json_object(request, svc.settings.max_upload_bytes)
    ids = body.get("ids")
    if ids is None:
        ids = []
    if (
        not isinstance(ids, list)
        or len(ids) > MAX_IDS
        or not all(isinstance(i, str) and 0 < len(i) <= 128 for i in ids)
    ):
        raise ValidationFailed("ids", f"expected a list of at most {MAX_IDS} task ids")
    found = []
    for ref in dict.fromkeys(ids):
        task = await svc.store.get_task(ref, owner=owner)
        if task is not None:
            found.append(mj_task(task))
    return JSON(found)


async def list_tasks(request: Request) -> Response:
    svc = _services(request)
    owner = owner_of(request, svc.settings.api_keys)
    only_params(request, ("limit", "cursor"))
    page = await svc.store.list_tasks(
        TaskQuery(owner=owner, limit=limit_param(request), cursor=cursor_param(request))
    )
    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else None
    return JSON([mj_task(t) for t in page.data], headers=headers)


async def cancel_task(request: Request) -> Response:
    svc = _services(request)
    owner = owner_of(request, svc.settings.api_keys)
    only_params(request, ())
    ref = request.path_params["id"]
    try:
        task = await actions.cancel(svc, owner, ref)
    except NotFound as exc:
        return answer(NOT_FOUND, exc.detail)
    except Conflict as exc:
        return answer(VALIDATION_ERROR, exc.detail, ref)
    return answer(
        SUCCESS,
        "Success",
        task["id"],
        {"status": task["status"], "providerCancelled": task["provider_cancelled"]},
    )


routes = [
    Route("/mj/submit/imagine", submit_imagine, methods=["POST"]),
    Route("/mj/submit/change", submit_change, methods=["POST"]),
    Route("/mj/submit/simple-change", submit_simple_change, methods=["POST"]),
    Route("/mj/submit/action", submit_action, methods=["POST"]),
    Route("/mj/submit/modal", submit_modal, methods=["POST"]),
    Route("/mj/submit/blend", submit_blend, methods=["POST"]),
    Route("/mj/submit/describe", submit_describe, methods=["POST"]),
    Route("/mj/task/list", list_tasks, methods=["GET"]),
    Route("/mj/task/list-by-condition", list_by_condition, methods=["POST"]),
    Route("/mj/task/{id}/fetch", fetch_task, methods=["GET"]),
    Route("/mj/task/{id}/cancel", cancel_task, methods=["POST"]),
]
