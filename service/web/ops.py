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
from service.metrics import counter, gauge
from service.services import Services
from service.web.problems import JSON, problem

#: /readyz says no when this many polls or deliveries are overdue: the workers are not keeping up.
BACKLOG_LIMIT = 10_000
#: /readyz warns (still ready) when the oldest due poll has waited this many seconds.
POLL_BEHIND_LIMIT = 120.0


async def poll_behind(svc: Services, now: float) -> float:
    """Seconds the oldest due poll has waited past its due time (0: none is late)."""
    due = await svc.store.next_poll_due()
    return 0.0 if due is None else max(0.0, now - due)


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
    backlog, behind = 0, 0.0
    reason: str | None = None  # why not ready
    now = time.time()
    try:
        await svc.store.ping()
        backlog = await svc.store.backlog(now)
        behind = await poll_behind(svc, now)
        queues = await svc.store.queue_depths(now)
    except StoreUnavailable as exc:
        reason = exc.detail
        queues = {}
    workers = getattr(request.app.state, "workers", None)
    if reason is None and workers is not None and not workers.alive:
        reason = "a worker loop has stopped"
    if reason is None and backlog > BACKLOG_LIMIT:
        reason = f"{backlog} polls and deliveries are overdue"
    # A poller that is behind is a warning, not a reason to leave the load balancer's rotation:
    # the wait may be a provider's own Retry-After, and a process taken out of rotation takes
    # no callbacks and answers no lookups, which helps nobody catch up.
    warnings = []
    if behind > POLL_BEHIND_LIMIT:
        warnings.append(
            f"the poller is behind: the oldest due poll has waited {behind:.0f} s "
            "(see poll.behind in the log, JOBHOOK_PROVIDER_RATES, JOBHOOK_POLL_CONCURRENCY)"
        )
    if not _operator(request, svc.settings.metrics_token):  # the status, no details
        if reason is None:
            return JSON({"status": "ready"})
        return JSON({"status": "not ready"}, 503)
    if reason is not None:
        return problem(503, "Not ready", reason, slug="not-ready")
    return JSON(
        {
            "status": "ready",
            "providers": sorted(svc.providers),
            "backlog": backlog,
            "poll_behind_seconds": round(behind, 1),
            "warnings": warnings,
            # the submission queue per provider: tasks waiting, being sent, the oldest's wait
            "submit_queue": {
                name: {
                    "waiting": depth.waiting,
                    "sending": depth.sending,
                    "oldest_wait_seconds": round(now - depth.oldest, 1) if depth.oldest else 0.0,
                    "concurrency": svc.settings.concurrency(name),
                }
                for name, depth in sorted(queues.items())
            },
        }
    )


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
    now = time.time()
    stats = await svc.store.stats(now)
    behind = await poll_behind(svc, now)
    batches, units = getattr(svc.store, "batches", (0, 0))
    rates = svc.rates.snapshot()
    queues = sorted((await svc.store.queue_depths(now)).items())
    gauges = [
        *gauge(
            "jobhook_tasks",
            "Tasks by provider and status.",
            ("provider", "status"),
            ((key, n) for key, n in sorted(stats.tasks.items())),
        ),
        *gauge("jobhook_polls_due", "Polls due now (queue depth).", (), [((), stats.polls_due)]),
        *gauge(
            "jobhook_poll_behind_seconds",
            "Seconds the oldest due poll has waited past its due time (0: the poller keeps up).",
            (),
            [((), round(behind, 3))],
        ),
        *gauge(
            "jobhook_provider_rate_limit",
            "Requests per second this process may send each provider (JOBHOOK_PROVIDER_RATES).",
            ("provider",),
            (((name,), rate) for name, rate, _ in rates),
        ),
        *counter(
            "jobhook_provider_rate_waited_seconds_total",
            "Seconds this process's requests waited for a provider's rate limit.",
            ("provider",),
            (((name,), round(waited, 3)) for name, _, waited in rates),
        ),
        *gauge(
            "jobhook_submit_queue_depth",
            "Tasks waiting in each provider's submission queue.",
            ("provider",),
            (((name,), depth.waiting) for name, depth in queues),
        ),
        *gauge(
            "jobhook_submit_sending",
            "Queued tasks being sent to each provider now (each holds one of its slots).",
            ("provider",),
            (((name,), depth.sending) for name, depth in queues),
        ),
        *gauge(
            "jobhook_submit_queue_wait_seconds",
            "Seconds the oldest task in each provider's submission queue has waited.",
            ("provider",),
            (
                ((name,), round(now - depth.oldest, 3) if depth.oldest else 0.0)
                for name, depth in queues
            ),
        ),
        *gauge(
            "jobhook_provider_concurrency",
            "Most jobs in flight at each provider (JOBHOOK_<PROVIDER>_CONCURRENCY), where set.",
            ("provider",),
            (((name,), cap) for name, cap in sorted(svc.settings.provider_concurrency.items())),
        ),
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
