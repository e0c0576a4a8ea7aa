"""`GET /v1/events/stream`: server-sent events of the caller's task changes, as they commit.

Woken by ingest through the hub (never by re-reading the database); filter by `task_id` and
`status`; a comment every 15 s keeps proxies from closing an idle stream; a client that goes
away frees its queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service.domain.status import Status
from service.errors import ValidationFailed
from service.services import Services
from service.web.requests import authenticate, only_params

KEEPALIVE = 15.0


async def stream(request: Request) -> Response:
    svc: Services = request.app.state.services
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ("task_id", "status"))
    task_id = request.query_params.get("task_id")
    statuses = {
        s.strip().upper()
        for v in request.query_params.getlist("status")
        for s in v.split(",")
        if s.strip()
    }
    if not statuses <= set(Status.__members__):
        raise ValidationFailed("status", f"expected any of {', '.join(Status)}")
    queue = svc.hub.subscribe(owner)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 3000\n: connected\n\n"
            while True:
                try:
                    task = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if task_id and task_id not in (task["id"], task["provider_task_id"]):
                    continue
                if statuses and task["status"] not in statuses:
                    continue
                yield (
                    f"id: {task['id']}.{task['sequence']}\nevent: task\ndata: ".encode()
                    + orjson.dumps(task)
                    + b"\n\n"
                )
        finally:
            svc.hub.unsubscribe(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


routes = [Route("/v1/events/stream", stream, methods=["GET"])]
