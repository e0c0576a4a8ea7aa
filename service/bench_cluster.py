"""`jobhook bench --cluster`: signed-callback ingest through 1 and 2 web processes on
PostgreSQL, beside SQLite and bare Starlette, in one run and one table.

Each setup runs as real processes on loopback with one explicit JOBHOOK_SECRET_KEYS, so a
callback token (and the simulator key that signs the bodies) verifies in every web process.
Its tasks are made through the jobhook under test, task n through web process n % k; then wrk
loads each web process with the callbacks of the tasks made through the next one, all at once,
the connections split evenly (2 web processes: two `wrk -t1 -c32`, req/s summed, the worse
p50 and p99 reported). PostgreSQL runs on a fresh database, dropped afterwards whatever happens.
"""

from __future__ import annotations

import asyncio
import base64
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from service.bench import _bare, _env, _lua, _port, _signed_callbacks, _start, _stop, _wait, _wrk

#: The admin connection that creates (and drops) the run's database.
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Every bench database's name starts so (`DROP DATABASE` by hand after a `kill -9`).
PREFIX = "jobhook_bench_"
#: wrk threads in all, whatever the number of web processes.
WRK_THREADS = 2

Result = dict[str, float]
Requests = list[tuple[str, bytes, str]]


class PostgresUnavailable(Exception):
    """The admin connection failed, or could not create the database: one line, no URL."""


@dataclass(frozen=True)
class Row:
    setup: str
    parts: tuple[float, ...]  # req/s of each wrk process
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int  # wrk's socket errors: connect, read, write, timeout

    @property
    def rps(self) -> float:
        return sum(self.parts)


def combine(setup: str, results: list[Result]) -> Row:
    """One row from the wrk processes that loaded a setup at once: their req/s summed, the
    worse of their p50 and p99, their non-2xx and socket errors added up."""
    return Row(
        setup=setup,
        parts=tuple(r["rps"] for r in results),
        p50_ms=max(r["p50_ms"] for r in results),
        p99_ms=max(r["p99_ms"] for r in results),
        non_2xx=int(sum(r["non_2xx"] for r in results)),
        errors=int(sum(r.get("errors", 0.0) for r in results)),
    )


def table(header: str, rows: list[Row], notes: Sequence[str] = ()) -> str:
    """The header, the rows (ratio to the first row's req/s), then the notes."""
    base = rows[0].rps if rows else 0.0
    width = max([len("setup"), *(len(row.setup) for row in rows)]) + 2
    lines = [
        header,
        f"{'setup':<{width}}{'req/s':>8}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}",
    ]
    for row in rows:
        ratio = row.rps / base if base else float("nan")
        lines.append(
            f"{row.setup:<{width}}{row.rps:>8.0f}{ratio:>7.2f}"
            f"{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}{row.non_2xx:>9d}"
        )
    for row in rows:
        if len(row.parts) > 1:
            parts = " + ".join(f"{part:.0f}" for part in row.parts)
            lines.append(
                f"{row.setup}: {parts} req/s; p50 and p99 the worse of the {len(row.parts)}"
            )
    return "\n".join([*lines, *notes])


def verdict(rows: list[Row]) -> str | None:
    """None when every request of every setup was a 2xx, else what was not."""
    bad = [
        f"{row.setup}: {row.non_2xx} non-2xx, {row.errors} socket errors"
        for row in rows
        if row.non_2xx or row.errors
    ]
    return "; ".join(bad) or None


def _admin() -> str:
    return os.environ.get("JOBHOOK_BENCH_POSTGRES_URL") or DEFAULT_ADMIN_URL


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or '?'}:{parts.port or 5432}"


async def _admin_run(admin_url: str, *statements: str) -> str:
    """Run `statements` on an admin connection; the server's version (e.g. 15.4)."""
    import asyncpg  # type: ignore[import-untyped]

    try:
        conn = await asyncpg.connect(admin_url, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise PostgresUnavailable(
            f"PostgreSQL is not reachable at {_where(admin_url)} ({reason})"
        ) from None
    try:
        for statement in statements:
            await conn.execute(statement)
        version: str = await conn.fetchval("SHOW server_version")
        return version.split()[0]
    except asyncpg.PostgresError as exc:  # e.g. the role may not create databases
        raise PostgresUnavailable(f"PostgreSQL at {_where(admin_url)} refused: {exc}") from None
    finally:
        await conn.close()


@contextmanager
def bench_database(admin_url: str | None = None) -> Iterator[tuple[str, str]]:
    """A new, empty database's URL and the server's version; the database is dropped (with
    any connection still open to it) on the way out, whatever happened inside."""
    admin_url = admin_url or _admin()
    name = PREFIX + secrets.token_hex(6)
    version = asyncio.run(_admin_run(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield urlsplit(admin_url)._replace(path=f"/{name}").geturl(), version
    finally:
        try:
            asyncio.run(_admin_run(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except PostgresUnavailable as exc:  # not a reason to drop the rows measured
            raise RuntimeError(f"could not drop database {name} ({exc}): drop it by hand") from None


def _serve(argvs: list[list[str]], env: dict[str, str], logs: Path,
           procs: list[subprocess.Popen[bytes]]) -> list[str]:  # fmt: skip
    """Start one `jobhook ARGV --port P` per argv (appended to `procs`, for the caller to
    stop); their URLs once each answers."""
    ports = [_port() for _ in argvs]
    for n, (argv, port) in enumerate(zip(argvs, ports, strict=True)):
        procs.append(_start(["service", *argv, "--port", str(port)], logs / f"web{n}.log", env))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for url, proc in zip(urls, procs[-len(urls) :], strict=True):
        _wait(url + "/healthz", proc)
    return urls


def _load(urls: list[str], groups: list[Requests], logs: Path, seconds: int,
          connections: int) -> list[Result]:  # fmt: skip
    """wrk on every URL at once, each with its share of the connections and threads; URL n
    gets the callbacks of the tasks made through URL n + 1 (with one URL: its own)."""
    k = len(urls)
    scripts = []
    threads = max(1, WRK_THREADS // k)
    for n in range(k):
        script = logs / f"callbacks{n}.lua"
        script.write_text(_lua(groups[(n + 1) % len(groups)], threads))
        scripts.append(script)
    with ThreadPoolExecutor(k) as pool:
        runs = [
            pool.submit(_wrk, url, script, seconds, connections // k, threads)
            for url, script in zip(urls, scripts, strict=True)
        ]
        return [run.result() for run in runs]


def _setup(name: str, argvs: list[list[str]], env: dict[str, str], logs: Path, secret: str, *,
           seconds: int, connections: int, tasks: int) -> Row:  # fmt: skip
    logs.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        urls = _serve(argvs, env, logs, procs)
        groups = _signed_callbacks(urls, secret, tasks, interleave=True)
        return combine(name, _load(urls, groups, logs, seconds, connections))
    finally:
        _stop(procs)


def _migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"jobhook migrate failed: {done.stderr.strip()[-300:]}")


def _run(
    work: Path, *, seconds: int, connections: int, tasks: int
) -> tuple[list[Row], str, str | None]:
    """The rows; "PostgreSQL VERSION", and None or why there are no PostgreSQL rows."""
    secret = secrets.token_urlsafe(32)
    keys = {
        "JOBHOOK_SECRET_KEYS": secret,
        "JOBHOOK_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    sizes = dict(seconds=seconds, connections=connections, tasks=tasks)
    rows: list[Row] = []
    # Bare Starlette and SQLite side by side, as `jobhook bench` does: one script for both.
    sqlite = work / "sqlite"
    sqlite.mkdir()
    env = _env(sqlite, f"sqlite:///{sqlite}/bench.sqlite3", **keys)
    bare_port = _port()
    procs = [_bare(bare_port, work / "bare.log")]
    try:
        _wait(f"http://127.0.0.1:{bare_port}/v1/callbacks/x/y", procs[0])
        urls = _serve([["serve"]], env, sqlite, procs)
        groups = _signed_callbacks(urls, secret, tasks, interleave=True)
        bare = _load([f"http://127.0.0.1:{bare_port}"], groups, work, seconds, connections)
        rows.append(combine("bare Starlette, 1 process", bare))
        rows.append(combine("SQLite, 1 process (serve)", _load(urls, groups, sqlite, seconds,
                                                                connections)))  # fmt: skip
    finally:
        _stop(procs)
    try:
        with bench_database() as (url, version):
            _migrate(_env(work / "pg-migrate", url, **keys))
            web = ["serve", "--no-workers"]
            for name, slug, argvs in (
                ("PostgreSQL, 1 web process", "pg1", [web]),
                ("PostgreSQL, 2 web processes", "pg2", [web, web]),
            ):
                env = _env(work / slug, url, **keys)
                rows.append(_setup(name, argvs, env, work / slug, secret, **sizes))
            return rows, f"PostgreSQL {version}", None
    except PostgresUnavailable as exc:
        return rows, "no PostgreSQL", f"{exc}: no PostgreSQL rows"


def main(*, seconds: int = 10, connections: int = 64, tasks: int = 100) -> int:
    if shutil.which("wrk") is None:
        print("jobhook bench: needs wrk (apt-get install wrk; scripts/bench installs it)")
        return 2
    load = "/".join(f"{n:.2f}" for n in os.getloadavg())
    started = time.strftime("%Y-%m-%d %H:%M")
    work = Path(tempfile.mkdtemp(prefix="jobhook-bench-cluster-"))
    try:
        rows, version, unreachable = _run(
            work, seconds=seconds, connections=connections, tasks=tasks
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"jobhook bench --cluster: {exc} (logs kept in {work})")
        return 1
    notes = [unreachable] if unreachable else []
    header = (
        f"{started}, nproc {len(os.sched_getaffinity(0))}, load {load}, "
        f"Python {platform.python_version()}, {version}; wrk -t{WRK_THREADS} -c{connections} "
        f"-d{seconds}s per setup (split evenly over its web processes), "
        f"{tasks * 50} distinct signed callbacks"
    )
    bad = verdict(rows)
    notes.append(f"NOT all 2xx: {bad} (logs kept in {work})" if bad else "every request a 2xx")
    print(table(header, rows, notes))
    if bad:
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0
