"""Provider adapters and the registry that enables them from settings."""

from __future__ import annotations

import hashlib
import hmac

from service.config import Settings
from service.providers.base import Provider


def simulator_key(settings: Settings) -> str:
    """The embedded simulator's API key: derived from the secret keys, so the web and worker
    processes agree on it and nobody else can guess it."""
    secret = (settings.secret_keys or ("",))[0].encode()
    return "sim_" + hmac.new(secret, b"jobhook.simulator", hashlib.sha256).hexdigest()[:32]


def build_providers(settings: Settings, *, simulator_url: str | None) -> dict[str, Provider]:
    """Providers with a configured key, plus the embedded simulator's three wire formats:
    `simulator` (Apiframe's, signed webhooks), `simulator-apimart` (poll-only, MODAL) and
    `simulator-vtrix` (unsigned callback hints)."""
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
        providers["simulator"] = ApiframeProvider(
            api_key=key, base_url=simulator_url, name="simulator"
        )
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
    return providers
