"""Provider adapters and the registry that enables them from settings."""

from __future__ import annotations

from service.config import Settings
from service.providers.base import Provider

#: The embedded simulator's API key; it only ever talks to this process.
SIMULATOR_KEY = "sim_local_key"


def build_providers(settings: Settings, *, simulator_url: str | None) -> dict[str, Provider]:
    """Providers with a configured key, plus `simulator` when the embedded simulator runs."""
    from service.providers.apiframe import ApiframeProvider

    providers: dict[str, Provider] = {}
    if simulator_url is not None:
        providers["simulator"] = ApiframeProvider(
            api_key=SIMULATOR_KEY, base_url=simulator_url, name="simulator"
        )
    key = settings.provider_keys.get("apiframe")
    if key:
        providers["apiframe"] = ApiframeProvider(
            api_key=key, base_url=settings.provider_urls["apiframe"]
        )
    return providers
