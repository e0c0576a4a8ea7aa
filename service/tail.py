"""`jobhook tail`: read jobhook's JSON log lines (a file, followed like `tail -F`, or a pipe),
filter them by task, level and event, and print each as one compact, optionally coloured line.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import orjson

from service.domain.numbers import whole_number

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_LEVEL_ALIASES = {"warn": "warning", "exception": "error", "fatal": "critical"}
_LEVEL_LABELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARN", "error": "ERROR"}
#: The ids in play, in the order they are shown after the event name.
IDS = ("task_id", "provider", "provider_task_id", "request_id", "delivery_id")
_SHOWN = frozenset({"event", "level", "timestamp", "exception", *IDS})
POLL_INTERVAL = 0.25

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_BOLD = "\x1b[1m"
_LEVEL_COLOURS = {
    "debug": _DIM,
    "info": "\x1b[32m",
    "warning": "\x1b[33m",
    "error": "\x1b[1;31m",
    "critical": "\x1b[1;41m",
}
_ID_COLOUR = "\x1b[35m"
_KEY_COLOUR = "\x1b[36m"


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    #: a task's jobhook id or provider task id; any of them matches
    tasks: tuple[str, ...] = ()
    #: the minimum level shown
    level: str | None = None
    #: event names, exact, or prefixes when they end in "." (`task.`)
    events: tuple[str, ...] = ()


def level_of(record: Mapping[str, Any]) -> str | None:
    """The record's level, normalised (`warn` -> `warning`), or None if it has none we know."""
    raw = record.get("level")
    if not isinstance(raw, str):
        return None
    name = raw.lower()
    name = _LEVEL_ALIASES.get(name, name)
    return name if name in LEVELS else None


def matches(record: Mapping[str, Any], filters: Filters) -> bool:
    """Whether a parsed log record passes every filter (a record without a level passes --level)."""
    if filters.tasks and not (
        record.get("task_id") in filters.tasks or record.get("provider_task_id") in filters.tasks
    ):
        return False
    level = level_of(record)
    if filters.level is not None and level is not None and LEVELS[level] < LEVELS[filters.level]:
        return False
    if filters.events:
        event = record.get("event")
        if not isinstance(event, str) or not any(
            event.startswith(name) if name.endswith(".") else event == name
            for name in filters.events
        ):
            return False
    return True


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def _time(value: Any) -> str:
    # "2026-11-21T20:02:04.470637Z" -> "20:02:04.470"; anything else is shown as it is.
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return value[11:23].ljust(12)
    return str(value) if value is not None else "-"


def _value(value: Any) -> str:
    if isinstance(value, str):
        needs_quotes = not value or any(c.isspace() or c in "\"'=\\" for c in value)
        return orjson.dumps(value).decode() if needs_quotes else value
    return orjson.dumps(value, default=str).decode()


def format_line(record: Mapping[str, Any], *, color: bool = False) -> str:
    """One compact line: time, level, event, the ids in play, then the other fields as key=value.

    An `exception` field (a formatted traceback) follows on its own indented lines.
    """
    level = level_of(record)
    label = _LEVEL_LABELS.get(level or "", str(record.get("level", "-")).upper()[:5])
    parts = [
        _paint(_time(record.get("timestamp")), _DIM, color),
        _paint(label.ljust(5), _LEVEL_COLOURS.get(level or "", ""), color),
        _paint(str(record.get("event", "-")).ljust(17), _BOLD, color),
    ]
    provider, provider_task = record.get("provider"), record.get("provider_task_id")
    for key in IDS:
        value = record.get(key)
        if value is None or key == "provider_task_id":
            continue
        if key == "provider" and provider_task is not None:
            value = f"{provider}:{provider_task}"
        parts.append(_paint(str(value), _ID_COLOUR, color))
    if provider is None and provider_task is not None:
        parts.append(_paint(f"provider_task_id={provider_task}", _ID_COLOUR, color))
    for key, value in record.items():
        if key not in _SHOWN:
            parts.append(f"{_paint(key, _KEY_COLOUR, color)}={_value(value)}")
    line = " ".join(parts)
    exception = record.get("exception")
    if exception:
        text = str(exception).rstrip("\n")
        line += "\n" + "\n".join("    " + row for row in text.splitlines())
    return line


def parse(line: str) -> dict[str, Any] | None:
    """The JSON object on this line, or None if it is anything else (shown as it is)."""
    if not line.startswith("{"):
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def render(line: str, filters: Filters, *, color: bool = False) -> str | None:
    """What to print for one raw log line: None when filtered out; other text passes through."""
    line = line.rstrip("\r\n")
    record = parse(line)
    if record is None:
        return line
    return format_line(record, color=color) if matches(record, filters) else None


def read_lines(stream: IO[bytes]) -> Iterator[str]:
    """The lines of a stream until it ends (a pipe: until the writer closes it)."""
    for raw in stream:
        yield raw.decode("utf-8", errors="replace")


def follow(
    path: str,
    *,
    start: int = 0,
    poll_interval: float = POLL_INTERVAL,
    stop: threading.Event | None = None,
) -> Iterator[str]:
    """The lines of `path` from byte `start`, then each line appended to it, like `tail -F`.

    A file that shrinks (truncated) is read again from its start; a file replaced under the
    same name (rotated) is drained, then the new one is opened. A missing file is waited for.
    A trailing line without its newline is held back until the newline arrives.
    """
    stop = stop or threading.Event()
    handle: IO[bytes] | None = None
    pending = b""
    try:
        while not stop.is_set():
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 (held open across yields)
                except FileNotFoundError:
                    stop.wait(poll_interval)
                    continue
                pending = b""
                if start and os.fstat(handle.fileno()).st_size >= start:
                    handle.seek(start)
                start = 0  # a reopened (rotated) file is read from its start
            chunk = handle.read(65536)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    yield raw.decode("utf-8", errors="replace")
                continue
            change = _change(handle, path)
            if change == "rotated":
                handle.close()
                handle = None
                if pending:  # the old file's last line never got its newline
                    yield pending.decode("utf-8", errors="replace")
                continue
            if change == "truncated":
                handle.seek(0)
                pending = b""
                continue
            stop.wait(poll_interval)
    finally:
        if handle is not None:
            handle.close()


def _change(handle: IO[bytes], path: str) -> str:
    """`rotated` when `path` now names another file, `truncated` when it shrank, else `same`."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return "same"  # rotated away and not yet recreated: keep the old one until it is
    opened = os.fstat(handle.fileno())
    if (current.st_ino, current.st_dev) != (opened.st_ino, opened.st_dev):
        return "rotated"
    return "truncated" if current.st_size < handle.tell() else "same"


class Snapshot:
    """The complete lines a file holds now; `offset` ends up just past them, where following
    resumes (a last line still being written is left to the follower)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.offset = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:
            if not raw.endswith(b"\n"):
                return
            self.offset += len(raw)
            yield raw.decode("utf-8", errors="replace")


def emit(
    lines: Iterable[str],
    filters: Filters,
    out: IO[str],
    *,
    color: bool,
    last: int | None = None,
) -> None:
    """Print what `render` makes of each line; with `last`, only the last that many."""
    texts: Iterable[str] = (
        text for line in lines if (text := render(line, filters, color=color)) is not None
    )
    if last is not None:
        texts = collections.deque(texts, maxlen=last)
    for text in texts:
        out.write(text + "\n")
        out.flush()


def _color(args: argparse.Namespace, out: IO[str]) -> bool:
    return not args.no_color and "NO_COLOR" not in os.environ and out.isatty()


def run(args: argparse.Namespace) -> int:
    filters = Filters(
        tasks=tuple(args.task or ()), level=args.level, events=tuple(args.event or ())
    )
    out = sys.stdout
    color = _color(args, out)
    source: str = args.file
    try:
        if source == "-":
            if sys.stdin.isatty():
                print(
                    "jobhook: no log to read: name a FILE, or pipe one in "
                    "(./scripts/serve 2>&1 | jobhook tail -)",
                    file=sys.stderr,
                )
                return 2
            emit(read_lines(sys.stdin.buffer), filters, out, color=color, last=args.lines)
        elif args.follow:
            start = 0
            if args.lines is not None and os.path.isfile(source):
                with open(source, "rb") as handle:
                    snapshot = Snapshot(handle)
                    emit(snapshot, filters, out, color=color, last=args.lines)
                    start = snapshot.offset
            emit(follow(source, start=start), filters, out, color=color)
        else:
            try:
                handle = open(source, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                print(f"jobhook: cannot read {source}: {exc.strerror}", file=sys.stderr)
                return 2
            with handle:
                emit(read_lines(handle), filters, out, color=color, last=args.lines)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `jobhook tail log | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 0


def _level(value: str) -> str:
    name = _LEVEL_ALIASES.get(value.lower(), value.lower())
    if name not in LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LEVELS)}, got {value!r}")
    return name


def _count(value: str) -> int:
    number = whole_number(value)
    if number is None:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}")
    return number


def add_parser(sub: Any) -> None:
    tail = sub.add_parser(
        "tail",
        help="follow a jobhook JSON log with filters and colour",
        description=(
            "Read jobhook's JSON log lines from FILE (or stdin with -), keep those that pass the "
            "filters, and print each as one line: time, level, event, the ids in play (task, "
            "provider:provider task, request, delivery), then the other fields as key=value. "
            "Lines that are not JSON objects pass through unfiltered. Colour only on a terminal."
        ),
        epilog=(
            "jobhook logs JSON to stderr whenever stderr is not a terminal, so:\n"
            "  ./scripts/serve 2>> var/jobhook.log &\n"
            "  jobhook tail -f -n 20 var/jobhook.log --event task.\n"
            "  jobhook tail var/jobhook.log --task task_01J... --level debug\n"
            "  ./scripts/serve 2>&1 | jobhook tail - --level warning\n"
        ),
    )
    tail.add_argument(
        "file", nargs="?", default="-", metavar="FILE|-", help="the log file, or - for stdin"
    )
    tail.add_argument(
        "--task", action="append", metavar="ID", help="only this task (jobhook or provider id)"
    )
    tail.add_argument(
        "--level",
        type=_level,
        metavar="L",
        help="minimum level: debug < info < warning < error",
    )
    tail.add_argument(
        "--event",
        action="append",
        metavar="NAME",
        help="only this event; a name ending in . is a prefix (task.); may be repeated",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep reading as the file grows (survives truncation and rotation); Ctrl-C stops",
    )
    tail.add_argument(
        "-n",
        "--lines",
        type=_count,
        metavar="N",
        help="start with only the last N lines shown of what is already there (default: all)",
    )
    tail.add_argument("--no-color", action="store_true", help="never colour (also NO_COLOR=1)")
    tail.set_defaults(run=run, client=True)
