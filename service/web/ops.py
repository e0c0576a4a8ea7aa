"""Operator endpoints: liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__
from service.errors import StoreUnavailable
from service.services import Services
from service.web.problems import JSON, problem


async def healthz(request: Request) -> Response:
    return JSON({"status": "ok", "version": __version__})


async def readyz(request: Request) -> Response:
    svc: Services = request.app.state.services
    try:
        await svc.store.ping()
    except StoreUnavailable as exc:
        return problem(503, "Not ready", exc.detail, slug="not-ready")
    workers = getattr(request.app.state, "workers", None)
    if workers is not None and not workers.alive:
        return problem(503, "Not ready", "a worker loop has stopped", slug="not-ready")
    return JSON({"status": "ready", "providers": sorted(svc.providers)})


routes = [Route("/healthz", healthz), Route("/readyz", readyz)]
