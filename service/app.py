"""create_app(settings): routes, middleware, and the lifespan that builds the shared resources."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from service.config import Settings
from service.errors import JobhookError
from service.logging import flush_logs, log
from service.providers import simulator_key
from service.security.ssrf import Resolver
from service.services import SIMULATOR_PREFIX, open_services, start_following
from service.simulator import Simulator
from service.web import callbacks, dashboard, endpoints, mj, openapi, ops, stream, tasks
from service.web.guard import Guard
from service.web.problems import on_http_error, on_jobhook_error, on_unexpected
from service.web.requests import RequestId, is_loopback
from service.workers.poller import DEFAULT_POLLER_CONFIG, PollerConfig
from service.workers.runner import Workers


class _InProcess(httpx.AsyncBaseTransport):
    """For tests: requests to our own public host go straight into the app (the embedded
    simulator, callbacks to us); everything else (client webhooks) over real HTTP."""

    def __init__(self, app: Starlette, host: str) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._net = httpx.AsyncHTTPTransport()
        self._host = host

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == self._host:
            return await self._asgi.handle_async_request(request)
        return await self._net.handle_async_request(request)

    async def aclose(self) -> None:
        await self._net.aclose()


class _LoopbackOnly:
    """The embedded simulator is a development fake: it answers loopback clients only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client") or ("", 0)
        if scope["type"] == "http" and not is_loopback(client[0]):
            await Response(status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    public_url: str | None = None,
    in_process: bool = False,
    simulator_seed: int | None = None,
    workers: bool = True,
    poller: PollerConfig = DEFAULT_POLLER_CONFIG,
    resolver: Resolver | None = None,
) -> Starlette:
    """Build the jobhook ASGI app.

    `public_url` is where providers reach our callbacks (default: JOBHOOK_PUBLIC_URL). With
    `in_process=True`, outbound HTTP (to the embedded simulator, and the simulator's callbacks
    back to us) goes straight into this app instead of over a socket: for tests. `workers`
    runs the poller and timers in this process (`jobhook serve`); `--no-workers` leaves them to
    `jobhook worker`.
    """
    settings = settings.with_secrets()
    base_url = (public_url or settings.public_url or "http://127.0.0.1:8000").rstrip("/")
    simulator = None
    if settings.simulator:
        simulator = Simulator(
            seed=simulator_seed,
            step_seconds=settings.simulator_step,
            api_keys=[simulator_key(settings)],
            open_controls=settings.dev_mode,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        transport = _InProcess(app, httpx.URL(base_url).host) if in_process else None
        async with open_services(
            settings, public_url=base_url, transport=transport, resolver=resolver
        ) as services:
            app.state.services = services
            runner = Workers(services, poller=poller) if workers else None
            app.state.workers = runner
            # Other processes' commits: always on a shared store (PostgreSQL), and on SQLite
            # when the workers run in another process.
            follows = services.store.shared or runner is None
            following: asyncio.Task[None] | None = None
            try:  # whatever started is stopped, also when a later step of start-up fails
                if simulator is not None:
                    simulator.transport = transport
                    await simulator.start()
                if follows:
                    following = await start_following(services.store, services.hub)
                if runner is not None:
                    await runner.start()
                if settings.dev_mode:
                    log.warning(
                        "jobhook.dev_mode",
                        message="no JOBHOOK_API_KEYS set: serving loopback clients only, "
                        "without auth",
                    )
                log.info(
                    "jobhook.started", public_url=base_url, providers=sorted(services.providers)
                )
                yield
            finally:
                if following is not None:
                    following.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await following
                if runner is not None:
                    await runner.stop()
                if simulator is not None:
                    await simulator.aclose()
                log.info("jobhook.stopped")
                flush_logs()  # uvicorn re-raises SIGTERM after this: atexit will not run

    routes: list[BaseRoute] = [
        *callbacks.routes,  # first: the busiest route is matched without scanning the rest
        *tasks.routes,
        *endpoints.routes,
        *stream.routes,
        *ops.routes,
        *openapi.routes,
        *dashboard.routes,
        *mj.routes,
    ]
    if simulator is not None:
        routes.append(Mount(SIMULATOR_PREFIX, app=_LoopbackOnly(simulator.app)))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestId),
            # after RequestId, so that its refusals carry a request id too
            Middleware(
                Guard,
                dev_mode=settings.dev_mode,
                test_host=httpx.URL(base_url).host if in_process else None,
                callback_host=httpx.URL(base_url).host,
            ),
        ],
        exception_handlers={
            JobhookError: on_jobhook_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    # A provider does not follow redirects: the callback route must never answer 3xx.
    app.router.redirect_slashes = False
    app.state.simulator = simulator
    return app
