"""`jobhook tail`: filters, the compact line, colour only on a terminal, non-JSON passthrough, and
following a file that grows, is truncated and is rotated."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.cli import main
from service.tail import Filters, follow, format_line, matches, render

TRANSITION: dict[str, Any] = {
    "status": "SUCCESS",
    "sequence": 5,
    "task_id": "task_01AAA",
    "provider": "simulator-apimart",
    "provider_task_id": "task_PROV1",
    "source": "poll",
    "outcome": "applied",
    "progress": 100,
    "event": "task.transition",
    "request_id": "req_01BBB",
    "level": "info",
    "timestamp": "2026-11-21T20:02:10.005705Z",
}
POLL: dict[str, Any] = {
    "result": "unchanged",
    "task_id": "task_01CCC",
    "provider": "simulator",
    "event": "poll.result",
    "level": "debug",
    "timestamp": "2026-11-21T20:02:11.000000Z",
}
REJECTED: dict[str, Any] = {
    "reason": "bad_signature",
    "provider": "apiframe",
    "event": "callback.rejected",
    "level": "warning",
    "timestamp": "2026-11-21T20:02:12.000000Z",
}


def line(record: dict[str, Any]) -> str:
    return orjson.dumps(record).decode()


def test_task_filter_matches_jobhook_or_provider_ids() -> None:
    assert matches(TRANSITION, Filters(tasks=("task_01AAA",)))
    assert matches(TRANSITION, Filters(tasks=("task_PROV1",)))
    assert not matches(POLL, Filters(tasks=("task_01AAA",)))
    assert not matches(REJECTED, Filters(tasks=("task_01AAA",)))  # no task at all


def test_level_filter_is_a_minimum() -> None:
    records = [TRANSITION, POLL, REJECTED, {"event": "x", "level": "error"}]
    assert [r["level"] for r in records if matches(r, Filters(level="info"))] == [
        "info",
        "warning",
        "error",
    ]
    assert [r["level"] for r in records if matches(r, Filters(level="warning"))] == [
        "warning",
        "error",
    ]
    assert matches({"event": "x", "level": "warn"}, Filters(level="warning"))
    assert matches({"event": "no level"}, Filters(level="error"))  # nothing to judge it by


def test_event_filter_is_exact_or_a_dotted_prefix() -> None:
    assert matches(TRANSITION, Filters(events=("task.",)))
    assert matches(TRANSITION, Filters(events=("task.transition",)))
    assert not matches(TRANSITION, Filters(events=("task.trans",)))  # no dot: exact only
    assert not matches(TRANSITION, Filters(events=("task",)))
    assert not matches(POLL, Filters(events=("task.",)))
    assert matches(POLL, Filters(events=("task.", "poll.result")))


def test_filters_combine() -> None:
    f = Filters(tasks=("task_01AAA",), level="info", events=("task.",))
    assert matches(TRANSITION, f)
    assert not matches(TRANSITION | {"level": "debug"}, f)
    assert not matches(TRANSITION | {"event": "poll.result"}, f)


def test_format_line_is_time_level_event_ids_then_fields() -> None:
    text = format_line(TRANSITION)
    assert text.startswith("20:02:10.005 INFO  task.transition   task_01AAA ")
    assert "simulator-apimart:task_PROV1 req_01BBB status=SUCCESS sequence=5" in text
    assert text.endswith("source=poll outcome=applied progress=100")
    for key in ("timestamp=", "level=", "event=", "task_id=", "request_id="):
        assert key not in text
    assert "\x1b[" not in text and "\n" not in text


def test_format_line_quotes_what_needs_it_and_shows_tracebacks_below() -> None:
    record = {
        "event": "http.unhandled",
        "level": "error",
        "timestamp": "2026-11-21T20:02:13.5Z",
        "delivery_id": "dlv_1",
        "reason": "same status, no new progress",
        "outcomes": ["applied"],
        "parent_id": None,
        "exception": "Traceback (most recent call last):\n  boom\nValueError: x\n",
    }
    text = format_line(record)
    first, *rest = text.split("\n")
    assert "ERROR http.unhandled" in first and " dlv_1 " in first
    assert 'reason="same status, no new progress"' in first
    assert 'outcomes=["applied"]' in first and "parent_id=null" in first
    assert rest == ["    Traceback (most recent call last):", "      boom", "    ValueError: x"]


def test_colour_is_opt_in() -> None:
    coloured = format_line(TRANSITION, color=True)
    assert "\x1b[32m" in coloured and coloured.count("\x1b[0m") >= 3
    plain = format_line(TRANSITION, color=False)
    assert "\x1b" not in plain


def test_non_json_lines_pass_through_unfiltered() -> None:
    strict = Filters(tasks=("task_nobody",), level="error", events=("nothing",))
    for raw in (
        "INFO:     Started server process [42]",
        "{not json at all",
        "[1, 2, 3]",  # JSON, but not an object
        '"a string"',
        "",
    ):
        assert render(raw + "\n", strict) == raw
    assert render(line(TRANSITION), strict) is None
    assert render(line(TRANSITION), Filters()) == format_line(TRANSITION)


def run_tail(
    args: list[str], capsys: pytest.CaptureFixture[str], stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        fake = io.TextIOWrapper(io.BytesIO(stdin.encode()))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("sys.stdin", fake)
            code = main(["tail", *args])
    else:
        code = main(["tail", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_tail_a_file_filters_and_is_plain_when_stdout_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "jobhook.log"
    log.write_text("\n".join([line(TRANSITION), "uvicorn says hi", line(POLL), line(REJECTED)]))
    code, out, _ = run_tail([str(log), "--event", "task."], capsys)
    assert code == 0
    assert out.splitlines() == [format_line(TRANSITION), "uvicorn says hi"]
    assert "\x1b" not in out  # capsys is not a terminal: no colour
    code, out, _ = run_tail([str(log), "--level", "warning"], capsys)
    assert out.splitlines() == ["uvicorn says hi", format_line(REJECTED)]


def test_lines_keeps_only_the_last_n_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "jobhook.log"
    log.write_text("\n".join(["one", line(POLL), "two", line(TRANSITION), "three"]) + "\n")
    code, out, _ = run_tail([str(log), "-n", "2", "--event", "poll.result"], capsys)
    assert code == 0 and out.splitlines() == ["two", "three"]
    code, out, _ = run_tail(["-", "--lines", "1"], capsys, stdin=log.read_text())
    assert out.splitlines() == ["three"]


def test_tail_reads_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    text = "\n".join([line(POLL), line(TRANSITION), "plain"]) + "\n"
    code, out, _ = run_tail(["-", "--task", "task_01CCC"], capsys, stdin=text)
    assert code == 0 and out.splitlines() == [format_line(POLL), "plain"]


def test_tail_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_tail([str(tmp_path / "missing.log")], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("jobhook: cannot read ")
    with pytest.raises(SystemExit) as exc:
        main(["tail", "x.log", "--level", "loud"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--level" in err and "debug, info, warning" in err


class Follower:
    """`follow` in a thread, collecting lines, with a short poll interval."""

    def __init__(self, path: Path) -> None:
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(str(path),), daemon=True)
        self.thread.start()

    def _run(self, path: str) -> None:
        for text in follow(path, poll_interval=0.01, stop=self.stop):
            self.lines.append(text)

    def wait_for(self, count: int) -> list[str]:
        eventually(lambda: len(self.lines) >= count)
        return list(self.lines)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        time.sleep(0.005)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "jobhook.log"


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_follow_waits_for_the_file_and_reads_lines_as_they_are_appended(log_path: Path) -> None:
    follower = Follower(log_path)
    try:
        time.sleep(0.05)  # the file does not exist yet
        append(log_path, "one\ntwo\n")
        assert follower.wait_for(2) == ["one", "two"]
        append(log_path, "thr")  # half a line is held back until its newline arrives
        time.sleep(0.05)
        assert follower.lines == ["one", "two"]
        append(log_path, "ee\nfour\n")
        assert follower.wait_for(4) == ["one", "two", "three", "four"]
    finally:
        follower.close()


def test_follow_starts_again_after_truncation(log_path: Path) -> None:
    log_path.write_text("a long first line that makes the file big\nsecond\n")
    follower = Follower(log_path)
    try:
        follower.wait_for(2)
        with log_path.open("w") as handle:  # truncated in place, like `> jobhook.log`
            handle.write("fresh\n")
        assert follower.wait_for(3)[2:] == ["fresh"]
        append(log_path, "more\n")
        assert follower.wait_for(4)[2:] == ["fresh", "more"]
    finally:
        follower.close()


def test_follow_reopens_a_rotated_file(log_path: Path) -> None:
    log_path.write_text("old 1\n")
    follower = Follower(log_path)
    try:
        follower.wait_for(1)
        append(log_path, "old 2\n")
        os.rename(log_path, log_path.with_suffix(".log.1"))
        log_path.write_text("new 1\n")
        assert follower.wait_for(3) == ["old 1", "old 2", "new 1"]
    finally:
        follower.close()


def test_tail_follow_prints_filtered_lines(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reader loop with -f, stopped as Ctrl-C would stop it."""
    log_path.write_text(line(POLL) + "\n" + line(TRANSITION) + "\n")
    import service.tail as tail

    real_follow = tail.follow

    def bounded(path: str, **_: Any) -> Iterator[str]:
        stop = threading.Event()
        for n, text in enumerate(real_follow(path, poll_interval=0.01, stop=stop), 1):
            yield text
            if n == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(tail, "follow", bounded)
    code = main(["tail", "-f", str(log_path), "--event", "task.transition", "--no-color"])
    assert code == 130
    assert capsys.readouterr().out.splitlines() == [format_line(TRANSITION)]


def test_follow_with_lines_shows_the_last_n_then_only_what_is_new(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path.write_text("old 1\nold 2\nold 3\nhalf a li")
    import service.tail as tail

    real_follow = tail.follow
    starts: list[int] = []

    def bounded(path: str, *, start: int = 0, **_: Any) -> Iterator[str]:
        starts.append(start)
        stop = threading.Event()
        for text in real_follow(path, start=start, poll_interval=0.01, stop=stop):
            yield text
            if text == "new":
                raise KeyboardInterrupt

    monkeypatch.setattr(tail, "follow", bounded)
    threading.Timer(0.1, append, (log_path, "ne\nnew\n")).start()
    assert main(["tail", "-f", "-n", "1", str(log_path)]) == 130
    assert capsys.readouterr().out.splitlines() == ["old 3", "half a line", "new"]
    assert starts == [len("old 1\nold 2\nold 3\n")]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("flags", "env", "coloured"),
    [([], {}, True), (["--no-color"], {}, False), ([], {"NO_COLOR": "1"}, False)],
)
def test_colour_on_a_terminal_unless_told_not_to(
    log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    env: dict[str, str],
    coloured: bool,
) -> None:
    log_path.write_text(line(TRANSITION) + "\n")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stdout", terminal)
    assert main(["tail", str(log_path), *flags]) == 0
    assert terminal.getvalue() == format_line(TRANSITION, color=coloured) + "\n"
