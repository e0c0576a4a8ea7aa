"""Shared fixtures: settings on a temporary SQLite file, and the app driven in-process."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from service.logging import configure_logging
from service.security.ssrf import system_resolver

configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)

BASE = "http://jobhook.test"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path}/jobhook.sqlite3",
        secret_keys=("test-secret-key-1",),
        webhook_secret="whsec_dGVzdC13ZWJob29rLXNlY3JldA==",
        var_dir=tmp_path,
        simulator_step=0.01,
        # Client webhooks in tests go to receivers on loopback, which the SSRF guard refuses
        # unless JOBHOOK_OUTBOUND_ALLOW opens it, as here.
        outbound_allow=(ipaddress.ip_network("127.0.0.0/8"),),
    )


async def resolver(host: str, port: int) -> list[str]:
    """This machine has no DNS: the documentation's example hosts resolve to a public address."""
    if host == "example.com" or host.endswith(".example.com"):
        return ["93.184.215.14"]
    return await system_resolver(host, port)


async def open_app(settings: Settings, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    kwargs.setdefault("resolver", resolver)
    app = create_app(settings, public_url=BASE, in_process=True, simulator_seed=7, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_app(settings):
        yield c
