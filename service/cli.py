"""The `jobhook` command: serve, worker, simulator, migrate, bench; the API client commands
(submit, status, tasks, modal), tail and demo are registered from their own modules."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

from service.config import ConfigError, Settings
from service.logging import configure_logging


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


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.app import create_app

    if settings.dev_mode and not _loopback(args.host):
        return _fail(
            f"refusing to serve on {args.host} without JOBHOOK_API_KEYS; "
            "set keys or use --host 127.0.0.1"
        )
    public_url = settings.public_url or f"http://127.0.0.1:{args.port}"
    app = create_app(settings, public_url=public_url, workers=not args.no_workers)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from service.services import open_services
    from service.workers.runner import Workers

    async def run() -> int:
        full = settings.with_secrets()
        public_url = full.public_url or "http://127.0.0.1:8000"
        async with open_services(full, public_url=public_url) as services:
            workers = Workers(services)
            await workers.start()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await workers.stop()
        return 0

    return asyncio.run(run())


def _simulator(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from service.simulator import create_standalone_app

    app = create_standalone_app(seed=args.seed, step_seconds=args.step)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service.store.base import open_store

    async def run() -> int:
        store = open_store(settings.database_url, synchronous=settings.sqlite_synchronous)
        await store.open()
        version = getattr(store, "schema_version", "?")
        await store.close()
        print(f"jobhook: schema at version {version} ({settings.database_url})")
        return 0

    return asyncio.run(run())


def _bench(args: argparse.Namespace, settings: Settings) -> int:
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
    from service import cli_api, demo, tail

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
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
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
    sim.add_argument("--port", type=int, default=9000)
    sim.add_argument("--seed", type=int, default=None, help="make ids deterministic")
    sim.add_argument("--step", type=float, default=1.0, help="seconds per job step (default 1)")
    sim.set_defaults(run=_simulator)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(run=_migrate)

    bench = sub.add_parser("bench", help="measure signed-callback ingest against bare Starlette")
    bench.add_argument("--seconds", type=int, default=10, help="per server (default 10)")
    bench.add_argument("--connections", type=int, default=64, help="open connections (64)")
    bench.add_argument("--tasks", type=int, default=100, help="tasks called back (100)")
    bench.set_defaults(run=_bench)

    cli_api.add_parsers(sub, client)
    tail.add_parser(sub)
    demo.add_parser(sub, client)
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
        return code
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    configure_logging(level=settings.log_level, fmt=settings.log_format, file=settings.log_file)
    result: int = args.run(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
