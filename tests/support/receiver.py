"""A client backend for tests: a real uvicorn server on 127.0.0.1 that records webhooks and
answers with whatever status the test scripts."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    #: statuses to answer, in order (then 200); a (status, headers) pair adds headers
    script: deque[int | tuple[int, dict[str, str]]] = field(default_factory=deque)
    delay: float = 0.0

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            self.received.append(
                Received(request.url.path, dict(request.headers), await request.body())
            )
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = self.script.popleft() if self.script else 200
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return Response(status_code=status, headers=headers)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[Receiver]:
    config = uvicorn.Config(
        receiver.app(), host="127.0.0.1", port=receiver.port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task
