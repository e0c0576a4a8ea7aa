"""Provider adapters and the registry that enables them from settings."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from urllib.parse import urlsplit

from service.config import Settings
from service.providers.base import Provider


def simulator_key(settings: Settings) -> str:
    """The embedded simulator's API key: derived from the secret keys, so the web and worker
    processes agree on it and nobody else can guess it."""
    secret = (settings.secret_keys or ("",))[0].encode()
    return "sim_" + hmac.new(secret, b"jobhook.simulator", hashlib.sha256).hexdigest()[:32]


def build_providers(
    settings: Settings, *, simulator_url: str | None, public_url: str | None = None
) -> dict[str, Provider]:
    """Providers with a configured key, plus the embedded simulator's three wire formats:
    `simulator` (Apiframe's, signed webhooks), `simulator-apimart` (poll-only, MODAL) and
    `simulator-vtrix` (unsigned callback hints).

    Apiframe takes only https:// webhook URLs (seed 004): with a `public_url` that is not
    https, Apiframe's tasks are polled at its pace instead (`webhooks_off`)."""
    from service.providers.apiframe import ApiframeProvider
    from service.providers.apimart import ApimartProvider
    from service.providers.vtrix import VtrixProvider

    kinds: dict[str, type[ApiframeProvider] | type[ApimartProvider] | type[VtrixProvider]] = {
        "apiframe": ApiframeProvider,
        "apimart": ApimartProvider,
        "vtrix": VtrixProvider,
    }
    providers: dict[str, Provider] = {}
    key = simulator_key(settings)
    if simulator_url is not None:
        simulator = ApiframeProvider(api_key=key, base_url=simulator_url, name="simulator")
        simulator.webhooks_need_https = False  # a fake on loopback: http:// is all it needs
        providers["simulator"] = simulator
        for wire in ("apimart", "vtrix"):
            name = f"simulator-{wire}"
            providers[name] = kinds[wire](api_key=key, base_url=simulator_url, name=name)
        for provider in providers.values():
            # The simulator's jobs move one step per JOBHOOK_SIMULATOR_STEP: poll at that pace.
            provider.poll_interval = min(provider.poll_interval, settings.simulator_step)
    for name, kind in kinds.items():
        if name in settings.provider_keys:
            providers[name] = kind(
                api_key=settings.provider_keys[name], base_url=settings.provider_urls[name]
            )
    apiframe = providers.get("apiframe")
    if isinstance(apiframe, ApiframeProvider):
        # A rehearsal against `jobhook simulator` on this machine takes http:// webhooks.
        apiframe.webhooks_need_https = not _on_loopback(settings.provider_urls.get("apiframe"))
        if public_url is not None and webhooks_off(settings, public_url):
            apiframe.supports_callbacks = False
    return providers


def webhooks_off(settings: Settings, public_url: str) -> bool:
    """True when an enabled Apiframe cannot call jobhook back at `public_url`: it is not
    https://, and Apiframe is not a rehearsal on this machine (JOBHOOK_APIFRAME_BASE_URL on
    loopback: `jobhook simulator`, which takes http://)."""
    if "apiframe" not in settings.provider_keys or public_url[:8].lower() == "https://":
        return False
    return not _on_loopback(settings.provider_urls.get("apiframe"))


def _on_loopback(url: str | None) -> bool:
    host = urlsplit(url or "").hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
