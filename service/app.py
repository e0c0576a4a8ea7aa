"""create_app(settings): routes, middleware, and the lifespan that builds the shared resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from service.config import Settings
from service.errors import JobhookError
from service.hub import Hub
from service.ingest import Ingest
from service.logging import log
from service.providers import SIMULATOR_KEY, build_providers
from service.security.tokens import CallbackTokens
from service.services import Services
from service.simulator import Simulator
from service.store.base import open_store
from service.web import callbacks, ops, tasks
from service.web.problems import on_http_error, on_jobhook_error, on_unexpected
from service.web.requests import RequestId

SIMULATOR_PREFIX = "/_sim"


def create_app(
    settings: Settings,
    *,
    public_url: str | None = None,
    in_process: bool = False,
    simulator_seed: int | None = None,
) -> Starlette:
    """Build the jobhook ASGI app.

    `public_url` is where providers reach our callbacks (default: JOBHOOK_PUBLIC_URL). With
    `in_process=True`, outbound HTTP (to the embedded simulator, and the simulator's callbacks
    back to us) goes straight into this app instead of over a socket: for tests.
    """
    settings = settings.with_secrets()
    base_url = (public_url or settings.public_url or "http://127.0.0.1:8000").rstrip("/")
    simulator = None
    if settings.simulator:
        simulator = Simulator(
            seed=simulator_seed, step_seconds=settings.simulator_step, api_keys=[SIMULATOR_KEY]
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        transport = httpx.ASGITransport(app=app) if in_process else None
        store = open_store(settings.database_url, synchronous=settings.sqlite_synchronous)
        await store.open()
        http = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False, timeout=30
        )
        if simulator is not None:
            simulator.transport = transport
            await simulator.start()
        hub = Hub()
        services = Services(
            settings=settings,
            store=store,
            hub=hub,
            ingest=Ingest(store, hub),
            providers=build_providers(
                settings,
                simulator_url=base_url + SIMULATOR_PREFIX if simulator is not None else None,
            ),
            tokens=CallbackTokens(settings.secret_keys),
            http=http,
            public_url=base_url,
        )
        app.state.services = services
        if settings.dev_mode:
            log.warning(
                "jobhook.dev_mode",
                message="no JOBHOOK_API_KEYS set: serving loopback clients only, without auth",
            )
        log.info("jobhook.started", public_url=base_url, providers=sorted(services.providers))
        try:
            yield
        finally:
            if simulator is not None:
                await simulator.aclose()
            await http.aclose()
            await store.close()
            log.info("jobhook.stopped")

    routes: list[BaseRoute] = [*tasks.routes, *callbacks.routes, *ops.routes]
    if simulator is not None:
        routes.append(Mount(SIMULATOR_PREFIX, app=simulator.app))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestId)],
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
