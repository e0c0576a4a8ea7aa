"""`GET /v1/events/stream`: server-sent events of the caller's task changes, as they commit.

Woken by ingest through the hub (never by re-reading the database); filter by `task_id` and
`status`; a comment every 15 s keeps proxies from closing an idle stream; a client that goes
away frees its queue. A stream ends after MAX_LIFETIME (the client reconnects, `retry:` says
when), and each owner holds at most a few long-lived requests at once (`limits.Slots`: long-polls
and streams together); beyond that the answer is 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.services import Services
from service.web.limits import take_slot
from service.web.requests import authenticate, only_params, status_param

KEEPALIVE = 15.0
#: seconds a stream stays open; then it ends and the client reconnects (after RETRY_MS)
MAX_LIFETIME = 3600.0
RETRY_MS = 3000


class _Held(StreamingResponse):
    """A stream that gives back what it holds however it ends: finished, the client gone, or
    cancelled before its body ever started (when the generator's own `finally` never runs)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def stream(request: Request) -> Response:
    svc: Services = request.app.state.services
    owner = authenticate(request, svc.settings.api_keys)
    only_params(request, ("task_id", "status"))
    task_id = request.query_params.get("task_id")
    statuses = set(status_param(request))
    release_slot = take_slot(request, owner, "event streams and long-polls")
    queue = svc.hub.subscribe(owner)

    def release() -> None:
        svc.hub.unsubscribe(queue)
        release_slot()

    async def events() -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_LIFETIME
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    yield b": lifetime reached, reconnect\n\n"
                    return
                try:
                    task = await asyncio.wait_for(queue.get(), timeout=min(KEEPALIVE, remaining))
                except TimeoutError:
                    if deadline - loop.time() > 0:
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
            release()

    return _Held(events(), release)


routes = [Route("/v1/events/stream", stream, methods=["GET"])]
