"""Shared fixtures: settings on a temporary SQLite file, and the app driven in-process.

PostgreSQL (a fresh database per test, tests/support/postgres.py): `pg_settings` are `settings`
on PostgreSQL; `any_settings` are `settings` on each store in turn; and `@both_stores` runs an
existing test, with its `settings` and `client`, once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.config import Settings
from service.logging import configure_logging
from service.security.ssrf import system_resolver
from tests.support.postgres import fresh_database

configure_logging(level="debug", fmt="json", stream=sys.stderr, cache=False)

BASE = "http://jobhook.test"


STORES = ["sqlite", "postgres"]


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store under `settings`: each in turn for a test marked @both_stores; otherwise
    JOBHOOK_TEST_STORE (sqlite by default; `JOBHOOK_TEST_STORE=postgres ./scripts/test` runs
    every test that does not reach into SQLite itself on PostgreSQL)."""
    kind: str = getattr(request, "param", None) or os.environ.get("JOBHOOK_TEST_STORE", "sqlite")
    if kind not in STORES:
        pytest.fail(f"JOBHOOK_TEST_STORE: expected one of {', '.join(STORES)}, got {kind!r}")
    return kind


#: Run the test once per store: its `settings` (and so `client`) on SQLite, then PostgreSQL.
both_stores = pytest.mark.parametrize("store_kind", STORES, indirect=True)


@pytest.fixture
def settings(tmp_path: Path, store_kind: str, request: pytest.FixtureRequest) -> Settings:
    database_url = f"sqlite:///{tmp_path}/jobhook.sqlite3"
    if store_kind == "postgres":
        database_url = request.getfixturevalue("pg_url")
    return Settings(
        database_url=database_url,
        secret_keys=("test-secret-key-1",),
        webhook_secret="whsec_dGVzdC13ZWJob29rLXNlY3JldA==",
        var_dir=tmp_path,
        simulator_step=0.01,
        # Client webhooks in tests go to receivers on loopback, which the SSRF guard refuses
        # unless JOBHOOK_OUTBOUND_ALLOW opens it, as here.
        outbound_allow=(ipaddress.ip_network("127.0.0.0/8"),),
    )


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test (dropped after it)."""
    async with fresh_database() as url:
        yield url


@pytest.fixture
def pg_settings(settings: Settings, pg_url: str) -> Settings:
    """`settings` with the store on PostgreSQL."""
    return replace(settings, database_url=pg_url)


@pytest.fixture(params=STORES)
def any_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """`settings` on each store in turn: the test runs once on SQLite, once on PostgreSQL."""
    if request.param == "postgres":
        pg: Settings = request.getfixturevalue("pg_settings")
        return pg
    return settings


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
