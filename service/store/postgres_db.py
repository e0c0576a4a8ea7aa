"""The PostgreSQL connector: an asyncpg pool, the named statements, migrations, and the one
place where a failing database becomes StoreUnavailable (the HTTP layer answers 503, and the
provider, client or worker tries again). It runs SQL; the store decides which."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]

from service.errors import BadRequest, StoreUnavailable
from service.logging import log
from service.store import queries

#: Connections per process. Each web or worker process holds its own pool: keep the product of
#: processes and this under the server's max_connections (100 by default).
POOL_SIZE = 10
#: Seconds to wait for a connection (to open one, or for one of the pool's to come free).
CONNECT_TIMEOUT = 10.0
#: Seconds a statement may run before the store gives up on it (StoreUnavailable).
COMMAND_TIMEOUT = 30.0
#: pg_advisory_xact_lock(LOCK_CLASS, key): "jobh" as a number, and one key per purpose.
LOCK_CLASS = 0x6A6F6268
MIGRATIONS_LOCK = 1
DELIVERY_CLAIMS_LOCK = 2

#: `:name` in a statement, not `::type` (a cast).
_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclass(frozen=True, slots=True)
class Query:
    """A named statement with its `:name` parameters numbered for asyncpg ($1, $2, ...)."""

    sql: str
    names: tuple[str, ...]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self.names]


def compile_query(sql: str) -> Query:
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return Query(_PARAM.sub(number, sql), tuple(names))


SQL = queries.load("postgres_queries.sql")
Q = {name: compile_query(sql) for name, sql in SQL.items()}


@functools.cache
def composed(*names: str) -> Query:
    """One statement from named blocks, in order (a list and the filters a request names)."""
    return compile_query("\n".join(SQL[name] for name in names))


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("service.store") / "postgres_migrations"
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


def where(url: str) -> str:
    """host:port/db of a database URL, for messages (never its user or password)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or '/'}"


#: What connecting can raise: refused, unknown host, timeout, wrong database or user, a DSN
#: option asyncpg does not take.
_CONNECT_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, ValueError)


async def reachable(url: str) -> None:
    """Connect once and hang up; StoreUnavailable saying why when that fails (for start-up:
    one line naming the database, not a traceback from a server's lifespan)."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except _CONNECT_ERRORS as exc:
        raise StoreUnavailable(f"cannot use PostgreSQL at {where(url)}: {_reason(exc)}") from None
    await conn.close()


def _transient(exc: BaseException) -> bool:
    """The database could not be reached, or gave up on this transaction: try again later."""
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError  # 08: the connection failed
        | asyncpg.exceptions.TransactionRollbackError  # 40: serialization failure, deadlock
        | asyncpg.exceptions.InsufficientResourcesError  # 53: too many connections, disk full
        | asyncpg.exceptions.OperatorInterventionError  # 57: shutdown, statement timeout
        | asyncpg.exceptions.LockNotAvailableError  # 55P03
        | asyncpg.exceptions.ReadOnlySQLTransactionError  # 25006: a replica, after a failover
        | asyncpg.exceptions.InternalClientError  # a server's goodbye on an idle connection
        | OSError  # refused, reset
        | TimeoutError,  # no connection came free; a statement ran past COMMAND_TIMEOUT
    ) or (isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError))


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: nothing (jobhook never changes session state; an open
    transaction is still rolled back by asyncpg). The default costs a round trip per use."""


class Database:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self) -> int:
        """Connect, migrate; returns the schema version."""
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                reset=_keep_session,
                # JIT compiles a plan whose estimated cost is high: for these short statements
                # (a claim of a few rows) that took 0.9 s of a 1 ms query once the estimates of
                # a big outbox came in. No statement here runs long enough to gain from it.
                server_settings={"application_name": "jobhook", "jit": "off"},
            )
            async with self.transaction() as conn:
                return await _migrate(conn)
        except (*_CONNECT_ERRORS, StoreUnavailable) as exc:
            await self.close()
            cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
            raise StoreUnavailable(
                f"cannot use PostgreSQL at {where(self.url)}: {_reason(cause or exc)}"
            ) from None

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; database trouble inside the block is StoreUnavailable."""
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                yield conn
        except asyncpg.exceptions.CharacterNotInRepertoireError:
            # A NUL character in a text value: PostgreSQL cannot store it (SQLite can).
            raise BadRequest("text with a NUL character (\\u0000) cannot be stored") from None
        except Exception as exc:
            if not _transient(exc):
                raise
            log.error("store.unavailable", error=_reason(exc))
            raise StoreUnavailable("the store could not commit; retry") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A pooled connection in a READ COMMITTED transaction, whatever the server's default:
        the locking reads rely on it (each statement sees what committed before it began, and
        a row it locks at its latest version)."""
        async with self.connection() as conn, conn.transaction(isolation="read_committed"):
            yield conn

    async def fetch(self, name: str | Query, **values: Any) -> list[Any]:
        query = Q[name] if isinstance(name, str) else name
        async with self.connection() as conn:
            return cast(list[Any], await conn.fetch(query.sql, *query.args(values)))

    async def fetchrow(self, name: str | Query, **values: Any) -> Any:
        query = Q[name] if isinstance(name, str) else name
        async with self.connection() as conn:
            return await conn.fetchrow(query.sql, *query.args(values))

    async def fetchval(self, name: str | Query, **values: Any) -> Any:
        query = Q[name] if isinstance(name, str) else name
        async with self.connection() as conn:
            return await conn.fetchval(query.sql, *query.args(values))

    async def execute(self, name: str | Query, **values: Any) -> int:
        """Run a statement; returns the rows it changed."""
        query = Q[name] if isinstance(name, str) else name
        async with self.connection() as conn:
            status = await conn.execute(query.sql, *query.args(values))
        return int(status.rsplit(" ", 1)[-1])


async def run(conn: Any, name: str, **values: Any) -> Any:
    """`name` on `conn` (inside a transaction the caller holds): the first row, or None."""
    query = Q[name]
    return await conn.fetchrow(query.sql, *query.args(values))


async def run_all(conn: Any, name: str, **values: Any) -> list[Any]:
    query = Q[name]
    return cast(list[Any], await conn.fetch(query.sql, *query.args(values)))


async def _migrate(conn: Any) -> int:
    """Bring the schema up to date, in the caller's transaction. The advisory lock makes
    processes that start together (web, workers, a release step) take turns: the first
    migrates, the others then find the schema current."""
    await run(conn, "advisory_lock", lock_class=LOCK_CLASS, lock_key=MIGRATIONS_LOCK)
    await conn.execute(Q["create_schema_version"].sql)
    current = int(await conn.fetchval(Q["schema_version"].sql))
    for version, sql in migrations():
        if version > current:
            await conn.execute(sql)
            await run(conn, "record_schema_version", version=version)
            log.info("store.migrated", version=version)
            current = version
    return current


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
