"""structlog set-up: one JSON object per line in production (orjson, bytes), colour on a TTY.

Every line passes `redact`, which keeps secrets, keys and base64 blobs out of the log.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import re
import sys
import threading
import weakref
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, Any, TextIO, cast

import orjson
import structlog

from service.config import private_dir

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_LEVELS["error"] = logging.ERROR

_SECRET_KEYS = re.compile(
    r"(authorization|api[_-]?key|secret|password|token|signature|cookie|mask$|^mask_b64)", re.I
)
_BASE64ISH = re.compile(r"^(data:[\w/+.-]+;base64,)?[A-Za-z0-9+/=_-]{200,}$")


@functools.lru_cache(maxsize=1024)
def _secret_name(key: str) -> bool:
    # Log lines reuse a small set of field names: judge each once (a line is on the hot path).
    return _SECRET_KEYS.search(key) is not None


def _scrub(value: Any) -> Any:
    if type(value) is str:
        if len(value) >= 200 and _BASE64ISH.match(value):
            return f"[{len(value)} chars of base64 removed]"
        return value
    if isinstance(value, dict):
        return {k: _scrub_item(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _scrub_item(key: Any, value: Any) -> Any:
    if isinstance(key, str) and _secret_name(key) and value not in (None, "", True, False):
        return "[redacted]"
    return _scrub(value)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace secret-named fields and base64 blobs, however deep they sit in the line."""
    for key, value in event_dict.items():
        if key != "event":
            scrubbed = _scrub_item(key, value)
            if scrubbed is not value:
                event_dict[key] = scrubbed
    return event_dict


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    stream: IO[Any] | None = None,
    cache: bool = True,
    file: str | None = None,
) -> None:
    """Configure structlog once per process. `fmt` is auto (console on a TTY), json or console;
    with `file`, every line is also appended there as JSON (for `jobhook tail`)."""
    out: Any = stream or sys.stderr
    console = fmt == "console" or (fmt == "auto" and out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact,  # after format_exc_info, so exception text is scrubbed too
    ]
    global _log_file
    if _log_file is not None:  # reconfigured: the old file is no longer written
        _log_file.close()
        _log_file = None
    if file is not None:
        _log_file = _JSONFile(file)
        shared.append(_log_file)
    if console:
        processors = [*shared, structlog.dev.ConsoleRenderer()]
        factory: Any = structlog.PrintLoggerFactory(cast(TextIO, out))
    else:
        processors = [*shared, structlog.processors.JSONRenderer(serializer=orjson.dumps)]
        factory = _BatchedFactory(getattr(out, "buffer", out))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=factory,
        cache_logger_on_first_use=cache,
    )


def flush_logs() -> None:
    """Write every batched log line now: for shutdown paths where `atexit` will not run
    (uvicorn re-raises SIGTERM after its graceful shutdown, which ends the process)."""
    for batch in list(_batches):
        batch.flush()


class _Batched:
    """A bytes logger that writes lines in batches: at most `DELAY` seconds after the first
    line of a batch (on the event loop), at once outside one, at exit and on `flush_logs()`.
    structlog's BytesLogger writes and flushes every line, a syscall on each request's hot
    path."""

    DELAY = 0.05
    MAX_LINES = 256

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        #: the loop a flush is scheduled on (None: none is); a loop that closes before its
        #: flush runs drops it, so a line logged on another loop schedules its own
        self._scheduled: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)
        _batches.add(self)

    def msg(self, message: bytes) -> None:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread (a CLI, the writer thread): now
            loop = None
        with self._lock:
            self._lines.append(message)
            now = loop is None or len(self._lines) >= self.MAX_LINES
            schedule = not now and self._scheduled is not loop
            if schedule:
                self._scheduled = loop
        if now:
            self.flush()
        elif schedule and loop is not None:
            loop.call_later(self.DELAY, self.flush)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg

    def flush(self) -> None:
        with self._lock:
            lines, self._lines, self._scheduled = self._lines, [], None
        if lines:
            with contextlib.suppress(ValueError, OSError):  # the stream closed under us
                self._out.write(b"\n".join(lines) + b"\n")
                self._out.flush()


_batches: weakref.WeakSet[_Batched] = weakref.WeakSet()


class _BatchedFactory:
    def __init__(self, out: Any) -> None:
        self._logger = _Batched(out)

    def __call__(self, *args: Any) -> _Batched:
        return self._logger


class _JSONFile:
    """A processor that appends each line, as JSON, to a file, then passes it on. A file made
    here is 0600 (its directory, if made here too, 0700); an existing one keeps its mode."""

    def __init__(self, path: str) -> None:
        private_dir(Path(path).parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "ab")  # lives as long as the process
        self._lines = _Batched(self._file)

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self._lines.msg(orjson.dumps(event_dict, default=str))
        return event_dict

    def close(self) -> None:
        self._lines.flush()
        self._file.close()


_log_file: _JSONFile | None = None


log = structlog.get_logger("jobhook")
