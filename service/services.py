"""The process's shared resources, built once in the app's lifespan and hung on app.state."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from service.config import Settings
from service.hub import Hub
from service.ingest import Ingest
from service.providers.base import Provider
from service.security.tokens import CallbackTokens
from service.store.base import Store


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

    def callback_url(self, provider: str, task_id: str) -> str:
        token = self.tokens.issue(provider, task_id)
        return f"{self.public_url}/v1/callbacks/{provider}/{token}"
