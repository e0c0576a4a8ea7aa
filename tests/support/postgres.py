"""PostgreSQL for tests: a fresh database per test on the local server, dropped afterwards.

The server is JOBHOOK_TEST_POSTGRES_URL (default: 127.0.0.1:5432, user postgres, trust auth);
databases are made through an admin connection to its `postgres` database. When the server is
not there, PostgreSQL tests fail with a clear message under CI (the env var CI is set) and are
skipped on a laptop.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

#: sslmode=disable: a local server; and asyncpg's default (prefer) leaves a "Future exception
#: was never retrieved" in the log for each query cancelled at shutdown.
ADMIN_URL = os.environ.get(
    "JOBHOOK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
)
#: Every test database's name starts so (`DROP DATABASE` by hand after an interrupted run).
PREFIX = "jobhook_t_"

_reachable: bool | None = None


def require_postgres() -> None:
    """Fail (under CI) or skip (elsewhere) unless the test server accepts connections."""
    global _reachable
    parts = urlsplit(ADMIN_URL)
    where = f"{parts.hostname}:{parts.port or 5432}"
    if _reachable is None:
        try:
            socket.create_connection((parts.hostname, parts.port or 5432), timeout=2).close()
            _reachable = True
        except OSError:
            _reachable = False
    if not _reachable:
        message = (
            f"PostgreSQL is not reachable at {where} (JOBHOOK_TEST_POSTGRES_URL): "
            "start it (user postgres, trust auth) to run the PostgreSQL tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def database_url(name: str) -> str:
    return urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped (connections and all) on the way out."""
    require_postgres()
    name = PREFIX + secrets.token_hex(6)
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
