"""The `jobhook` command: serve, worker, simulator, migrate, bench; the API client commands
(submit, status, tasks, modal), tail and demo are registered from their own modules."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from service.config import ConfigError, Settings, private_file, redacted_url
from service.domain.numbers import whole_number
from service.logging import configure_logging, flush_logs, log

#: In ./var: the URL the last `jobhook serve` is reachable at, for a worker started without
#: JOBHOOK_PUBLIC_URL.
PUBLIC_URL_FILE = "public_url"


def _fail(message: str, code: int = 2) -> int:
    print(f"jobhook: {message}", file=sys.stderr)
    return code


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _prepare(settings: Settings) -> Settings:
    """Make the secrets in ./var and the database file (private) before anything starts, so a
    path that cannot be made is one line naming its variable, not a traceback from a server."""
    settings = settings.with_secrets()
    _database_file(settings)
    return settings


def _database_file(settings: Settings) -> None:
    if settings.postgres:  # a server's database: nothing to create, but it must answer
        from service.errors import StoreUnavailable
        from service.store.postgres_db import reachable

        try:
            asyncio.run(reachable(settings.database_url))
        except StoreUnavailable as exc:
            raise ConfigError(f"JOBHOOK_DATABASE_URL: {exc.detail}") from None
        return
    path = settings.database_path
    try:
        private_file(Path(path))
    except OSError as exc:
        raise ConfigError(
            f"JOBHOOK_DATABASE_URL: cannot create {path} ({exc.strerror or exc})"
        ) from None


def _port(text: str) -> int:
    number = whole_number(text)
    if number is None or not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return number


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a busy port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is in use (another jobhook?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigError(
            f"cannot listen on {host}:{port}: the port {reason}; pick --port"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_server(app: Any, sock: socket.socket, **options: Any) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_config=None, access_log=False, **options)
    uvicorn.Server(config).run(sockets=[sock])


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.app import create_app

    if settings.dev_mode and not _loopback(args.host):
        return _fail(
            f"refusing to serve on {args.host} without JOBHOOK_API_KEYS; "
            "set keys or use --host 127.0.0.1"
        )
    settings = _prepare(settings)
    sock = _listen(args.host, args.port)
    public_url = settings.public_url or f"http://127.0.0.1:{args.port}"
    # A `jobhook worker` started without JOBHOOK_PUBLIC_URL finds this web process here.
    _record_public_url(settings, public_url)
    app = create_app(settings, public_url=public_url, workers=not args.no_workers)
    try:
        _run_server(app, sock, lifespan="on", timeout_graceful_shutdown=10)
    finally:
        _forget_public_url(settings, public_url)
    return 0


def _record_public_url(settings: Settings, url: str) -> None:
    if settings.var_dir is not None:
        with contextlib.suppress(OSError):
            (Path(settings.var_dir) / PUBLIC_URL_FILE).write_text(url + "\n")


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _forget_public_url(settings: Settings, url: str) -> None:
    """A stopped serve takes its URL back (only its own: another serve may have recorded)."""
    recorded = Path(settings.var_dir or ".") / PUBLIC_URL_FILE
    with contextlib.suppress(OSError):
        if recorded.read_text().strip() == url:
            recorded.unlink()


def _worker_public_url(settings: Settings) -> str:
    """Where the web process is: JOBHOOK_PUBLIC_URL, else what a local `jobhook serve`
    recorded in ./var. The simulator and our callback route live there; a worker that guessed
    (port 8000) would poll a simulator that is not there and say only "could not reach"."""
    if settings.public_url:
        return settings.public_url
    recorded = Path(settings.var_dir or ".") / PUBLIC_URL_FILE
    with contextlib.suppress(OSError):
        url = recorded.read_text().strip()
        if url and _answers(url):
            return url
        if url and settings.simulator:
            raise ConfigError(
                f"JOBHOOK_PUBLIC_URL: the web process recorded in {recorded} ({url}) does not "
                "answer; start `jobhook serve` first, or set JOBHOOK_PUBLIC_URL"
            )
    if settings.simulator:
        raise ConfigError(
            "JOBHOOK_PUBLIC_URL: jobhook worker needs the web process's URL (the simulator and "
            "the callback route live there), e.g. JOBHOOK_PUBLIC_URL=http://127.0.0.1:8000; "
            f"no `jobhook serve` has recorded one in {recorded}"
        )
    return "http://127.0.0.1:8000"


def _metrics_server(services: Any, sock: socket.socket) -> tuple[Any, asyncio.Task[None]]:
    """A worker's /metrics (and /healthz) on its own port: the same handler as the web
    process's, so the same JOBHOOK_METRICS_TOKEN rule; its counters are this worker's."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from service.web import ops

    app = Starlette(
        routes=[
            Route("/metrics", ops.metrics, methods=["GET"]),
            Route("/healthz", ops.healthz, methods=["GET"]),
        ]
    )
    app.state.services = services

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # The worker handles SIGTERM itself (and stops this server): uvicorn must not
            # take the signal from it.
            yield

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()[:2]
    log.info("worker.metrics", url=f"http://{host}:{port}/metrics")
    return server, serving


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from service.services import open_services, start_following
    from service.workers.runner import Workers

    full = _prepare(settings)
    public_url = _worker_public_url(full)
    # Its own /metrics (JOBHOOK_METRICS_PORT): the poll and delivery counters live here.
    metrics_sock = (
        _listen(full.metrics_host, full.metrics_port) if full.metrics_port is not None else None
    )
    log.info("worker.starting", public_url=public_url)

    async def run() -> int:
        # First: a SIGTERM while starting also stops gracefully (the default would kill us
        # with the log's last lines unwritten).
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_services(full, public_url=public_url) as services:
            workers = Workers(services)
            await workers.start()
            metrics = _metrics_server(services, metrics_sock) if metrics_sock else None
            # On a shared store (PostgreSQL), web processes' commits wake these workers at once.
            following = (
                await start_following(services.store, services.hub)
                if services.store.shared
                else None
            )
            await stop.wait()
            if metrics is not None:
                server, serving = metrics
                server.should_exit = True
                await serving
            if following is not None:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
            await workers.stop()
        return 0

    try:
        return asyncio.run(run())
    finally:
        flush_logs()


def _simulator(args: argparse.Namespace, settings: Settings) -> int:
    from service.simulator import create_standalone_app

    sock = _listen(args.host, args.port)
    app = create_standalone_app(seed=args.seed, step_seconds=args.step)
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}"
    log.info(
        "simulator.started",
        url=url,
        message=f"provider simulator on {url}: set JOBHOOK_APIMART_BASE_URL, "
        f"JOBHOOK_APIFRAME_BASE_URL or JOBHOOK_VTRIX_BASE_URL to {url}",
    )
    _run_server(app, sock)
    return 0


def _sample_mask(args: argparse.Namespace) -> int:
    import base64

    from service.demo import mask_png

    png = mask_png()
    if args.base64:
        print(base64.b64encode(png).decode())
    elif args.file:
        Path(args.file).write_bytes(png)
    else:
        return _fail("name a FILE to write the PNG to, or pass --base64")
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from service.backup import backup

    tasks, size = backup(settings, Path(args.file))
    print(
        f"jobhook: backed up {settings.database_path} to {args.file} ({tasks} tasks, {size} bytes)"
    )
    return 0


def _simulator_key(args: argparse.Namespace, settings: Settings) -> int:
    from service.providers import simulator_key

    print(simulator_key(settings.with_secrets()))
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service.errors import StoreUnavailable
    from service.store.base import open_store

    _database_file(settings)

    async def run() -> int:
        store = open_store(settings.database_url, synchronous=settings.sqlite_synchronous)
        try:
            await store.open()
        except StoreUnavailable as exc:  # PostgreSQL went away, or a migration failed
            return _fail(f"JOBHOOK_DATABASE_URL: {exc.detail}", 1)
        version = getattr(store, "schema_version", "?")
        await store.close()
        print(f"jobhook: schema at version {version} ({redacted_url(settings.database_url)})")
        return 0

    return asyncio.run(run())


def _bench_job(value: str) -> str:
    """A `jobhook bench` job name (argparse's `choices` refuses an empty `nargs="*"`)."""
    if value not in ("all", "ingest", "lookup", "scale", "poll", "deliver", "queue"):
        raise argparse.ArgumentTypeError(
            f"invalid job {value!r} (choose from all, ingest, lookup, scale, poll, deliver, queue)"
        )
    return value


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.jobs:
        from service import bench_jobs

        jobs = bench_jobs.JOBS if "all" in args.jobs else tuple(dict.fromkeys(args.jobs))
        stores = ("sqlite", "postgres") if args.store == "both" else (args.store,)
        return bench_jobs.run(
            jobs, stores=stores, seconds=args.seconds, connections=args.connections,
            quick=args.quick,
        )  # fmt: skip
    if args.cluster:
        from service.bench_cluster import main as cluster_main

        return cluster_main(seconds=args.seconds, connections=args.connections, tasks=args.tasks)
    from service.bench import main as bench_main

    return bench_main(seconds=args.seconds, connections=args.connections, tasks=args.tasks)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps each line of prose to the terminal; keeps indented lines (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines: list[str] = []
        for line in text.splitlines():
            if line[:1].isspace() or not line:
                lines.append(indent + line)
            else:
                lines.extend(
                    textwrap.wrap(line, width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (and exit code 2), pointing at the command's --help; help
    text wrapped by HelpFormatter (subcommands are made by this class too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jobhook: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from service import cli_api, demo, listen, tail

    parser = _Parser(
        prog="jobhook",
        description="A durable, signed bridge between backends and image-generation APIs.",
        epilog="Run `jobhook COMMAND --help` for a command's options and examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client = _Parser(add_help=False)
    client.add_argument(
        "--url",
        help=f"jobhook's base URL (default: JOBHOOK_URL, else {cli_api.DEFAULT_URL})",
    )

    serve = sub.add_parser("serve", help="run the HTTP API (with the embedded simulator)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--no-workers",
        action="store_true",
        help="HTTP only; run the poller and timers with `jobhook worker` (the Procfile's split)",
    )
    serve.set_defaults(run=_serve)

    worker = sub.add_parser("worker", help="run the poller and timers without the HTTP API")
    worker.set_defaults(run=_worker)

    sim = sub.add_parser("simulator", help="run the provider simulator on its own port")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=9000)
    sim.add_argument("--seed", type=int, default=None, help="make ids deterministic")
    sim.add_argument("--step", type=float, default=1.0, help="seconds per job step (default 1)")
    sim.set_defaults(run=_simulator)

    key = sub.add_parser(
        "simulator-key",
        help="print the embedded simulator's API key (for /_sim/_faults when API keys are set)",
        description="The key the embedded simulator takes, derived from JOBHOOK_SECRET_KEYS "
        "(or ./var/secret_key): send it as `Authorization: Bearer KEY` to /_sim/_faults. In dev "
        "mode (no JOBHOOK_API_KEYS) the fault switchboard needs no key.",
    )
    key.set_defaults(run=_simulator_key)

    mask = sub.add_parser(
        "sample-mask",
        help="write a sample inpaint mask PNG (or print it base64) to try the MODAL flow",
        description="A 64x64 RGBA mask: an opaque white square in the middle (repaint) on "
        "transparent (keep), the form APIMart's modal call takes.",
        epilog="examples:\n  jobhook sample-mask mask.png\n"
        '  MASK=$(jobhook sample-mask --base64)   # for {"mask": "..."} in POST .../modal\n',
    )
    mask.add_argument("file", nargs="?", metavar="FILE", help="where to write the PNG")
    mask.add_argument("--base64", action="store_true", help="print the PNG base64 instead")
    mask.set_defaults(run=_sample_mask, client=True)

    backup = sub.add_parser(
        "backup",
        help="copy the SQLite database to FILE while jobhook runs (online backup)",
        description="A consistent copy of the database (SQLite's backup API), made while jobhook "
        "keeps serving; the copy is one self-contained file, mode 0600 (it holds webhook "
        "secrets). Restore: stop jobhook, put the copy at the JOBHOOK_DATABASE_URL path.",
        epilog="example:\n  jobhook backup backups/jobhook-$(date +%F).sqlite3\n",
    )
    backup.add_argument("file", metavar="FILE", help="a new file to write")
    backup.set_defaults(run=_backup)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(run=_migrate)

    bench = sub.add_parser(
        "bench",
        help="measure every job the service does beside its bare-stack or raw-client figure",
    )
    bench.add_argument(
        "jobs",
        nargs="*",
        metavar="JOB",
        type=_bench_job,
        help="all, ingest, lookup, scale, poll, deliver, queue: one table (none: the ingest table)",
    )
    bench.add_argument(
        "--store",
        choices=["sqlite", "postgres", "both"],
        default="sqlite",
        help="run the jobs on SQLite, on a fresh PostgreSQL database each, or both",
    )
    bench.add_argument("--quick", action="store_true", help="small sizes, short windows")
    bench.add_argument("--seconds", type=int, default=10, help="per server (default 10)")
    bench.add_argument("--connections", type=int, default=64, help="open connections (64)")
    bench.add_argument("--tasks", type=int, default=100, help="tasks called back (100)")
    bench.add_argument(
        "--cluster",
        action="store_true",
        help="one table: bare Starlette, SQLite (serve), and 1 and 2 web processes "
        "(serve --no-workers) on a fresh PostgreSQL database (JOBHOOK_BENCH_POSTGRES_URL, "
        "default postgresql://postgres@127.0.0.1:5432/postgres, is the admin connection)",
    )
    bench.set_defaults(run=_bench)

    cli_api.add_parsers(sub, client)
    tail.add_parser(sub)
    demo.add_parser(sub, client)
    listen.add_parser(sub, client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "client", False):  # talks to a running jobhook: no server settings
        from service.cli_api import ApiError

        try:
            code: int = args.run(args)
        except ApiError as exc:
            return _fail(str(exc), exc.code)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `jobhook status ID | head -1`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        return code
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        configure_logging(level=settings.log_level, fmt=settings.log_format, file=settings.log_file)
    except OSError as exc:
        return _fail(f"JOBHOOK_LOG_FILE: cannot open {settings.log_file} ({exc.strerror or exc})")
    try:
        result: int = args.run(args, settings)
    except ConfigError as exc:  # found while starting: secrets in ./var, the database file
        return _fail(str(exc))
    return result


if __name__ == "__main__":
    sys.exit(main())
