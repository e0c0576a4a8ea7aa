"""Provider callbacks in: token, signature, parse, ingest; 2xx only after the commit.

Answers: 200 for applied, duplicate, stale and conflict (the provider must stop retrying); 401
bad token or signature; 400 malformed; 403 a body naming another task; 413 too large; 503 when
the store cannot commit (the provider retries, nothing is lost). A provider that does not sign
its callbacks only gets to say "look again" (202): the poller fetches the task from the
provider's API at once and ingests that, so a forged body alone never changes a task.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import actions
from service.domain import schedule
from service.domain.models import Observation
from service.errors import Forbidden, MalformedCallback, NotFound, PayloadTooLarge, Unauthorized
from service.logging import log
from service.services import Services
from service.web.problems import JSON
from service.web.requests import read_body


async def receive_callback(request: Request) -> Response:
    svc: Services = request.app.state.services
    name = request.path_params["provider"]
    provider = svc.providers.get(name)
    if provider is None:
        raise NotFound(f"no provider {name!r} is enabled here")
    # The token first: a body (up to JOBHOOK_MAX_BODY_BYTES) is read only for a real task.
    task_id = svc.tokens.verify(name, request.path_params["token"])
    if task_id is None:
        _refused(svc, name, "bad_token")
        raise Unauthorized("the callback token is not valid for this provider")
    bind = {"provider": name, "task_id": task_id}
    try:
        body = await read_body(request, svc.settings.max_body_bytes)
    except PayloadTooLarge:
        _refused(svc, name, "too_large", task_id=task_id)
        raise

    async def reject(reason: str, note: str) -> None:
        _refused(svc, name, reason, task_id=task_id)
        obs = Observation(status=None, source="callback", detail=note, raw=_printable(body))
        await svc.ingest(task_id, obs)

    if not provider.verify_callback(request.headers, body):
        await reject("bad_signature", "the callback signature did not verify")
        raise Unauthorized("the callback signature did not verify")
    try:
        observations = provider.parse_callback(request.headers, body)
    except MalformedCallback as exc:
        await reject("malformed", exc.detail)
        raise
    if not provider.signs_callbacks:
        return await _hint(svc, task_id, observations, bind)
    outcomes: list[str] = []
    # One log line per observation, written by ingest (task.transition or task.observation,
    # source "callback"), which carries what a `callback.received` line would: no second line.
    note = {"callback_bytes": len(body)}
    for obs in observations:
        applied = await svc.ingest(
            task_id,
            obs,
            schedule=schedule.after_callback(svc.settings.reconcile_after, time.time()),
            note=note,
        )
        if applied.decision.foreign:
            _refused(svc, bind["provider"], "foreign_task", task_id=task_id)
            raise Forbidden(applied.decision.reason or "the callback names another task")
        outcomes.append(applied.decision.outcome)
    svc.metrics.callbacks.inc(name)
    return JSON({"ok": True, "outcomes": outcomes})


async def _hint(
    svc: Services, task_id: str, hints: list[Observation], bind: dict[str, Any]
) -> Response:
    try:
        await actions.hint(svc, task_id, hints)
    except Forbidden:
        _refused(svc, bind["provider"], "foreign_task", task_id=task_id)
        raise
    svc.metrics.callbacks.inc(bind["provider"])
    log.info("callback.received", outcomes=["deferred"], hint=True, **bind)
    return JSON({"ok": True, "outcomes": ["deferred"]}, 202)


def _refused(svc: Services, provider: str, reason: str, **ids: str) -> None:
    svc.metrics.callbacks_rejected.inc(provider, reason)
    log.warning("callback.rejected", provider=provider, reason=reason, **ids)


def _printable(body: bytes) -> str:
    return body[:2048].decode("utf-8", "replace")


routes = [Route("/v1/callbacks/{provider}/{token}", receive_callback, methods=["POST"])]
