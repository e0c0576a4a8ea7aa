"""Provider callbacks in: token, signature, parse, ingest; 2xx only after the commit.

Answers: 200 for applied, duplicate, stale and conflict (the provider must stop retrying); 401
bad token or signature; 400 malformed; 403 a body naming another task; 413 too large; 503 when
the store cannot commit (the provider retries, nothing is lost).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    try:
        body = await read_body(request, svc.settings.max_body_bytes)
    except PayloadTooLarge:
        log.warning("callback.rejected", provider=name, reason="too_large")
        raise
    task_id = svc.tokens.verify(name, request.path_params["token"])
    if task_id is None:
        log.warning("callback.rejected", provider=name, reason="bad_token")
        raise Unauthorized("the callback token is not valid for this provider")
    bind = {"provider": name, "task_id": task_id}

    async def reject(reason: str, note: str) -> None:
        log.warning("callback.rejected", reason=reason, **bind)
        obs = Observation(status=None, source="callback", detail=note, raw=_printable(body))
        await svc.ingest(task_id, obs)

    if provider.signs_callbacks and not provider.verify_callback(request.headers, body):
        await reject("bad_signature", "the callback signature did not verify")
        raise Unauthorized("the callback signature did not verify")
    try:
        observations = provider.parse_callback(request.headers, body)
    except MalformedCallback as exc:
        await reject("malformed", exc.detail)
        raise
    outcomes = []
    for obs in observations:
        applied = await svc.ingest(task_id, obs)
        if applied.decision.foreign:
            log.warning("callback.rejected", reason="foreign_task", **bind)
            raise Forbidden(applied.decision.reason or "the callback names another task")
        outcomes.append(applied.decision.outcome)
    log.info("callback.received", outcomes=outcomes, bytes=len(body), **bind)
    return JSON({"ok": True, "outcomes": outcomes})


def _printable(body: bytes) -> str:
    return body[:2048].decode("utf-8", "replace")


routes = [Route("/v1/callbacks/{provider}/{token}", receive_callback, methods=["POST"])]
