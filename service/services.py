"""The process's shared resources, built once (by the app's lifespan or `jobhook worker`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ipaddress import ip_network

import httpx

from service.config import IPNetwork, Settings
from service.hub import Hub
from service.ingest import Ingest
from service.logging import log
from service.metrics import Metrics
from service.providers import build_providers, webhooks_off
from service.providers.base import Provider
from service.providers.rates import Rates, default_rate
from service.security.ssrf import OutboundGuard, Resolver, system_resolver
from service.security.tokens import CallbackTokens, SessionCookies
from service.store.base import Store, open_store

#: Where the embedded simulator is mounted in the web app.
SIMULATOR_PREFIX = "/_sim"


@dataclass(slots=True, kw_only=True)
class Services:
    settings: Settings
    store: Store
    hub: Hub
    ingest: Ingest
    providers: dict[str, Provider]
    tokens: CallbackTokens
    #: the one outbound HTTP client of this process (construction costs ~25 ms)
    http: httpx.AsyncClient
    #: the base URL providers use to reach our callback route
    public_url: str
    #: the SSRF guard for every URL jobhook calls or asks a provider to fetch
    guard: OutboundGuard
    #: the dashboard's signed session cookies
    sessions: SessionCookies
    metrics: Metrics
    #: requests per second to each provider, shared by submissions, polls and modal calls
    rates: Rates

    def callback_url(self, provider: str, task_id: str) -> str:
        token = self.tokens.issue(provider, task_id)
        return f"{self.public_url}/v1/callbacks/{provider}/{token}"


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    public_url: str,
    transport: httpx.AsyncBaseTransport | None = None,
    resolver: Resolver | None = None,
) -> AsyncIterator[Services]:
    """Open the store and the HTTP client; `settings` must already carry its secrets."""
    store = open_store(settings.database_url, synchronous=settings.sqlite_synchronous)
    await store.open()
    http = httpx.AsyncClient(
        transport=transport, trust_env=False, follow_redirects=False, timeout=30
    )
    hub = Hub()
    metrics = Metrics()
    providers = build_providers(
        settings,
        simulator_url=public_url + SIMULATOR_PREFIX if settings.simulator else None,
        public_url=public_url,
    )
    if webhooks_off(settings, public_url):
        log.warning(
            "apiframe.webhooks_off",
            public_url=public_url,
            message="Apiframe takes only https:// webhook URLs, and JOBHOOK_PUBLIC_URL is not "
            "one: jobhook sends Apiframe no webhookUrl and polls every Apiframe task instead "
            "(slower, and more requests). Put jobhook behind HTTPS (a TLS reverse proxy or a "
            "tunnel; README: Going to production) and set JOBHOOK_PUBLIC_URL=https://...",
        )
    try:
        yield Services(
            settings=settings,
            store=store,
            hub=hub,
            ingest=Ingest(store, hub, metrics),
            metrics=metrics,
            providers=providers,
            rates=Rates((name, default_rate(name, settings)) for name in providers),
            tokens=CallbackTokens(settings.secret_keys),
            http=http,
            public_url=public_url,
            sessions=SessionCookies(settings.secret_keys),
            guard=OutboundGuard(
                allow=_outbound_allow(settings), resolver=resolver or system_resolver
            ),
        )
    finally:
        await http.aclose()
        await store.close()


#: Loopback, open outbound in dev mode: webhooks to `jobhook listen`, the simulator's images.
LOOPBACK = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def _outbound_allow(settings: Settings) -> tuple[IPNetwork, ...]:
    """JOBHOOK_OUTBOUND_ALLOW, plus loopback in dev mode: with no API keys jobhook serves only
    loopback clients with loopback Host names, who can reach this machine's services anyway."""
    extra = (
        tuple(n for n in LOOPBACK if n not in settings.outbound_allow) if settings.dev_mode else ()
    )
    return (*settings.outbound_allow, *extra)


#: Seconds start-up waits for a store to be following other processes' commits.
FOLLOW_READY_TIMEOUT = 10.0


async def start_following(store: Store, hub: Hub) -> asyncio.Task[None]:
    """Follow other processes' commits (`store.follow`) in the background; returns once the
    store is listening, so nothing committed after start-up goes unheard (or after
    FOLLOW_READY_TIMEOUT, loudly: it goes on trying)."""
    ready = asyncio.Event()
    following = asyncio.create_task(store.follow(hub, ready), name="jobhook-follow")
    waiting = asyncio.ensure_future(ready.wait())
    await asyncio.wait(
        {following, waiting}, timeout=FOLLOW_READY_TIMEOUT, return_when="FIRST_COMPLETED"
    )
    waiting.cancel()
    if following.done():
        following.result()  # it failed: say why
    if not ready.is_set():
        log.warning("store.not_following", message="other processes' commits are not heard yet")
    return following
