"""Operator endpoints: liveness, readiness, Prometheus metrics.

With JOBHOOK_METRICS_TOKEN set, `/metrics` needs `Authorization: Bearer <token>` and `/readyz`
tells a caller without it only the status (its details, like the metrics, span every tenant).
"""

from __future__ import annotations

import hmac
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import __version__
from service.errors import StoreUnavailable
from service.metrics import gauge
from service.services import Services
from service.web.problems import JSON, problem

#: /readyz says no when this many polls or deliveries are overdue: the workers are not keeping up.
BACKLOG_LIMIT = 10_000


async def healthz(request: Request) -> Response:
    """The process answers."""
    return JSON({"status": "ok", "version": __version__})


def _operator(request: Request, token: str | None) -> bool:
    """No token configured, or the request carries it as a bearer token."""
    if token is None:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), token.encode()
    )


async def readyz(request: Request) -> Response:
    """The store takes a write, the workers run, the backlog is under its limit."""
    svc: Services = request.app.state.services
    backlog = 0
    reason: str | None = None  # why not ready
    try:
        await svc.store.ping()
        backlog = await svc.store.backlog(time.time())
    except StoreUnavailable as exc:
        reason = exc.detail
    workers = getattr(request.app.state, "workers", None)
    if reason is None and workers is not None and not workers.alive:
        reason = "a worker loop has stopped"
    if reason is None and backlog > BACKLOG_LIMIT:
        reason = f"{backlog} polls and deliveries are overdue"
    if not _operator(request, svc.settings.metrics_token):  # the status, no details
        if reason is None:
            return JSON({"status": "ready"})
        return JSON({"status": "not ready"}, 503)
    if reason is not None:
        return problem(503, "Not ready", reason, slug="not-ready")
    return JSON({"status": "ready", "providers": sorted(svc.providers), "backlog": backlog})


async def metrics(request: Request) -> Response:
    """Prometheus text format: this process's counters plus the store's gauges."""
    svc: Services = request.app.state.services
    if not _operator(request, svc.settings.metrics_token):
        return problem(
            401,
            "Not authenticated.",
            "send Authorization: Bearer <JOBHOOK_METRICS_TOKEN>",
            slug="unauthorized",
            instance=request.url.path,
        )
    stats = await svc.store.stats(time.time())
    batches, units = getattr(svc.store, "batches", (0, 0))
    gauges = [
        *gauge(
            "jobhook_tasks",
            "Tasks by provider and status.",
            ("provider", "status"),
            ((key, n) for key, n in sorted(stats.tasks.items())),
        ),
        *gauge("jobhook_polls_due", "Polls due now (queue depth).", (), [((), stats.polls_due)]),
        *gauge(
            "jobhook_deliveries",
            "Deliveries not yet delivered, by status (pending, dead).",
            ("status",),
            (((status,), n) for status, n in sorted(stats.deliveries.items())),
        ),
        *gauge(
            "jobhook_deliveries_due",
            "Deliveries due now (queue depth).",
            (),
            [((), stats.deliveries_due)],
        ),
        *gauge(
            "jobhook_oldest_unfinished_task_age_seconds",
            "Age of the oldest task that has not ended.",
            (),
            [((), stats.oldest_unfinished_age)],
        ),
        *gauge("jobhook_waiters", "Long-polls waiting.", (), [((), svc.hub.waiting)]),
        *gauge("jobhook_streams", "Live event streams open.", (), [((), svc.hub.streams)]),
        *gauge("jobhook_store_batches", "Write transactions committed.", (), [((), batches)]),
        *gauge("jobhook_store_units", "Units of work committed.", (), [((), units)]),
    ]
    return Response(
        svc.metrics.render(gauges), media_type="text/plain; version=0.0.4; charset=utf-8"
    )


routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
