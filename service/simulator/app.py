"""The provider simulator's shared core: the Starlette app, the clock, seeded ids, auth, the
webhook sender and the image route that every simulated provider builds on.
"""

from __future__ import annotations

import asyncio
import functools
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.simulator.apiframe import ApiframeSimulator
from service.simulator.png import image_for

#: One try plus three retries per webhook; a provider that gives up sooner loses fewer hooks.
WEBHOOK_ATTEMPTS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SentWebhook:
    """One webhook attempt; `status_code` is None when no answer came (connect error...)."""

    job_id: str
    url: str
    event: str
    attempt: int
    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Simulator:
    """Fake providers over real HTTP. `app` has no lifespan: await `start()` and `aclose()`."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        step_seconds: float = 0.5,
        api_keys: Collection[str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.step_seconds = step_seconds
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.sent_webhooks: list[SentWebhook] = []
        self.request_counts: Counter[str] = Counter()
        self.transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The last queued webhook per job: the next one waits for it, so hooks go out in order.
        self._tails: dict[str, asyncio.Task[bool]] = {}
        self.apiframe = ApiframeSimulator(self)
        routes: list[BaseRoute] = [
            *self.apiframe.routes(),
            Route("/images/{name}.png", self._image, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, middleware=[Middleware(_CountRequests, sim=self)])
        self.app.state.simulator = self

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport, trust_env=False, timeout=10)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tails.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def new_uuid(self) -> str:
        """A uuid4 from the seeded generator, so a seeded simulator hands out the same ids."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    async def tick(self) -> None:
        """One step of the clock."""
        await asyncio.sleep(self.step_seconds)

    def authorized(self, key: str | None) -> bool:
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    @staticmethod
    def base_url(request: Request) -> str:
        """This app's own base URL, mount prefix included, ending in `/`.

        `request.base_url` drops a Mount's prefix (it keeps only the top app's root_path), and
        URLs handed out (images) must point back into this app wherever it is mounted.
        """
        root = request.scope.get("root_path", "").rstrip("/")
        return str(request.base_url.replace(path=root + "/"))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a job's clock in the background; `aclose()` cancels it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def send_webhook(
        self,
        *,
        job_id: str,
        url: str,
        event: str,
        body: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[bool], None] | None = None,
    ) -> None:
        """Queue one webhook; per job they go out one at a time, in the order queued."""
        previous = self._tails.get(job_id)
        task = asyncio.create_task(
            self._deliver(previous, job_id=job_id, url=url, event=event, body=body, headers=headers)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._tails[job_id] = task
        if on_done is not None:
            task.add_done_callback(functools.partial(_report, on_done))

    async def _deliver(
        self,
        previous: asyncio.Task[bool] | None,
        *,
        job_id: str,
        url: str,
        event: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> bool:
        if previous is not None:
            await asyncio.wait([previous])
        delivered = False
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            if attempt > 1:
                await asyncio.sleep(self.step_seconds * (attempt - 1))
            status_code, error = await self._post(url, body, headers)
            sent = SentWebhook(
                job_id=job_id,
                url=url,
                event=event,
                attempt=attempt,
                status_code=status_code,
                error=error,
            )
            self.sent_webhooks.append(sent)
            if sent.delivered:
                delivered = True
                break
        if self._tails.get(job_id) is asyncio.current_task():
            del self._tails[job_id]
        return delivered

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        if self._client is None:
            return None, "simulator not started: await Simulator.start() first"
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    async def _image(self, request: Request) -> Response:
        name = request.path_params["name"]
        grid = name.endswith("-grid")
        png = image_for(name, size=128 if grid else 64, tiles=2 if grid else 1)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})


def create_standalone_app(
    *,
    seed: int | None = None,
    step_seconds: float = 0.5,
    api_keys: Collection[str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The simulator as its own server (`jobhook simulator --port N`), with a lifespan."""
    sim = Simulator(seed=seed, step_seconds=step_seconds, api_keys=api_keys, transport=transport)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sim:
            yield

    app = Starlette(routes=[Mount("/", app=sim.app)], lifespan=lifespan)
    app.state.simulator = sim
    return app


def _report(on_done: Callable[[bool], None], task: asyncio.Task[bool]) -> None:
    # A cancelled sender (aclose) reports nothing: the job is going away with it.
    if not task.cancelled() and task.exception() is None:
        on_done(task.result())


class _CountRequests:
    """Counts requests per route (`"GET /v2/jobs/{id}"`) so tests can see how hard we polled."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            # The router records the matched route in the scope it was handed, this same dict.
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.sim.request_counts[f"{scope['method']} {path}"] += 1
