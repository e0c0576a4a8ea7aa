"""The API client commands without a server: --param parsing, one-line usage errors (exit 2),
problem+json answers as one line, the table, the progress display and the long-poll loop."""

from __future__ import annotations

import argparse
import io
import socket
import struct
import zlib
from typing import Any

import httpx
import pytest

from service.cli import main
from service.cli_api import (
    Api,
    ApiError,
    Progress,
    exit_code,
    parse_param,
    problem_line,
    result_lines,
    table,
)
from service.demo import mask_png


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("index=2", ("index", 2)),
        ("iw=1.5", ("iw", 1.5)),
        ("raw=true", ("raw", True)),
        ("seed=null", ("seed", None)),
        (
            'image_urls=["https://cdn.example.com/a.png"]',
            ("image_urls", ["https://cdn.example.com/a.png"]),
        ),
        ('metadata={"order": 42}', ("metadata", {"order": 42})),
        ("prompt=a red fox in snow", ("prompt", "a red fox in snow")),
        ("aspect_ratio=16:9", ("aspect_ratio", "16:9")),
        ('version="8.1"', ("version", "8.1")),  # quoted JSON keeps text
        ("prompt=x=y", ("prompt", "x=y")),  # only the first = splits
        ("prompt=", ("prompt", "")),
        ("prompt=[never", ("prompt", "[never")),  # looks like JSON, is not: text
        (" key =1", ("key", 1)),
    ],
)
def test_param_values_are_json_when_they_parse_as_json(
    text: str, expected: tuple[str, Any]
) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["prompt", "=value", "", " =1"])
def test_a_param_needs_a_key_and_an_equals_sign(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected key=value"):
        parse_param(text)


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        ([], "COMMAND"),
        (["submit"], "ACTION"),
        (["submit", "imagine", "--param", "prompt"], "--param"),
        (["submit", "imagine", "--bogus"], "--bogus"),
        (["status"], "ID"),
        (["tasks", "--limit", "0"], "--limit"),
        (["tasks", "--limit", "many"], "--limit"),
        (["modal", "task_1", "--mask-url", "https://x/m.png", "--mask-file", "m.png"], "--mask"),
        (["demo", "--step-delay", "-1"], "--step-delay"),
        (["tail", "--level", "loud"], "--level"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], mentions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("jobhook: ") and mentions in err
    assert "--help" in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("submit", "status", "tasks", "modal", "tail", "demo"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: jobhook {command}" in out and f"  jobhook {command}" in out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens here once the socket is closed


def test_connection_refused_names_the_url_and_how_to_start_jobhook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("JOBHOOK_URL", url)
    assert main(["submit", "imagine", "--param", "prompt=a fox"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and url in err and "./scripts/serve" in err
    assert main(["status", "task_1", "--url", url + "/"]) == 2
    assert url in capsys.readouterr().err


def test_an_unreadable_mask_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modal", "task_1", "--mask-file", "/nonexistent/mask.png"]) == 2
    assert capsys.readouterr().err == (
        "jobhook: cannot read /nonexistent/mask.png: No such file or directory\n"
    )


def response(
    status: int, body: Any, content_type: str = "application/problem+json"
) -> httpx.Response:
    request = httpx.Request("GET", "http://127.0.0.1:8000/v1/tasks/x")
    if isinstance(body, str):
        return httpx.Response(status, text=body, request=request)
    return httpx.Response(
        status, json=body, headers={"content-type": content_type}, request=request
    )


def test_problem_line_shows_the_detail_and_the_fields_it_does_not_name() -> None:
    one = {
        "status": 422,
        "detail": "params.index: expected an integer from 1 to 4",
        "errors": [{"field": "params.index", "message": "expected an integer from 1 to 4"}],
    }
    assert problem_line(response(422, one)) == "params.index: expected an integer from 1 to 4"
    two = {
        "status": 422,
        "detail": "2 fields are not valid",
        "errors": [{"field": "params.chaos"}, {"field": "params.iw"}],
    }
    assert problem_line(response(422, two)) == (
        "2 fields are not valid (fields: params.chaos, params.iw)"
    )
    assert problem_line(response(404, {"detail": "no task x"})) == "no task x"
    assert problem_line(response(502, "<html>Bad gateway</html>")) == (
        "HTTP 502 from http://127.0.0.1:8000/v1/tasks/x: <html>Bad gateway</html>"
    )


def test_a_401_without_a_key_says_which_variable_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBHOOK_API_KEY", raising=False)
    assert problem_line(response(401, {"detail": "missing bearer token"})).endswith(
        "; set JOBHOOK_API_KEY"
    )


def task(status: str = "SUCCESS", progress: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "id": "task_01M7ZV78122FJ9P84N6E6V41JP",
        "provider": "simulator-apimart",
        "action": "imagine",
        "status": status,
        "progress": progress,
        "result": None,
        "error": None,
        "created_at": "2026-11-21T20:02:04.450Z",
    } | extra


def test_result_lines_list_the_urls_or_the_error_or_the_next_step() -> None:
    done = task(
        result={"grid_url": "http://g/grid.png", "images": ["http://g/1.png"], "videos": []}
    )
    assert result_lines(done) == [
        "SUCCESS task_01M7ZV78122FJ9P84N6E6V41JP (imagine on simulator-apimart, 100%)",
        "  grid     http://g/grid.png",
        "  image 1  http://g/1.png",
    ]
    described = task(
        action="describe",
        result={"images": [], "prompts": ["a lake --ar 3:2", "a hill"], "expires_at": None},
    )
    assert result_lines(described)[1:] == ["  prompt 1 a lake --ar 3:2", "  prompt 2 a hill"]
    expiring = task(result={"images": ["http://g/1.png"], "expires_at": "2026-11-22T20:02:04Z"})
    assert result_lines(expiring)[-1] == (
        "  expires  2026-11-22T20:02:04Z (the provider's URLs stop working)"
    )
    failed = task("FAILURE", error={"code": "provider_failed", "message": "moderation"})
    assert result_lines(failed)[1] == "  error    provider_failed: moderation"
    modal = result_lines(task("MODAL", 15))
    assert "jobhook modal task_01M7ZV78122FJ9P84N6E6V41JP" in modal[-1]
    assert "POST /v1/tasks/task_01M7ZV78122FJ9P84N6E6V41JP/modal" in modal[-1]
    assert [exit_code(task(s)) for s in ("SUCCESS", "MODAL", "FAILURE", "CANCEL")] == [0, 0, 1, 1]


def test_the_table_fits_the_terminal_and_keeps_ids_whole() -> None:
    rows = [task(), task("IN_PROGRESS", 70, action="high_variation", id="task_" + "Z" * 26)]
    full = table(rows)
    assert full[0].split() == ["ID", "PROVIDER", "ACTION", "STATUS", "PROGRESS", "CREATED"]
    assert "simulator-apimart" in full[1] and "11-21 20:02:04" in full[1]
    assert full[2].split()[-3:] == ["70%", "11-21", "20:02:04"]
    narrow = table(rows, width=80)
    assert all(len(row) <= 80 for row in narrow)
    assert "task_" + "Z" * 26 in narrow[2] and "task_01M7ZV78122FJ9P84N6E6V41JP" in narrow[1]
    assert table([], width=80) == [table([], width=80)[0]]


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=True)
    for state in (("SUBMITTED", 0), ("IN_PROGRESS", 50), ("SUCCESS", 100)):
        progress(task(*state))
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
    assert "[############------------]  50% IN_PROGRESS" in text


def test_progress_prints_plain_lines_on_change_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, tty=False)
    for state in (("SUBMITTED", 0), ("SUBMITTED", 0), ("IN_PROGRESS", 50), ("SUCCESS", 100)):
        progress(task(*state))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1:3] for line in lines] == [
        ["SUBMITTED", "0%"],
        ["IN_PROGRESS", "50%"],
        ["SUCCESS", "100%"],
    ]
    assert "\r" not in stream.getvalue()


def test_wait_long_polls_until_the_end_and_rides_out_a_5xx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.cli_api.time.sleep", lambda _: None)
    answers = [
        httpx.Response(200, json=task("IN_PROGRESS", 40)),
        httpx.Response(503, json={"detail": "the store is busy"}),
        httpx.Response(200, json=task("SUCCESS", 100)),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    api = Api("http://jobhook.test/", api_key="k" * 12, transport=httpx.MockTransport(handler))
    states: list[str] = []
    done = api.wait(task("SUBMITTED", 0), lambda t: states.append(t["status"]))
    api.close()
    assert done["status"] == "SUCCESS" and states == ["SUBMITTED", "IN_PROGRESS", "SUCCESS"]
    assert all(r.url.params["wait"] == "30" for r in seen)
    assert seen[0].headers["authorization"] == "Bearer " + "k" * 12


def test_wait_stops_at_once_on_a_4xx() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no task task_1"})

    api = Api("http://jobhook.test", transport=httpx.MockTransport(handler))
    with pytest.raises(ApiError) as exc:
        api.wait(task("SUBMITTED", 0), lambda _: None)
    assert exc.value.code == 2 and str(exc.value) == "no task task_1"


def test_the_demo_mask_is_a_valid_rgba_png() -> None:
    png = mask_png(8)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = {}, 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, data = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        chunks[kind] = data
        offset += 12 + length
    assert struct.unpack(">IIBBBBB", chunks[b"IHDR"]) == (8, 8, 8, 6, 0, 0, 0)
    rows = zlib.decompress(chunks[b"IDAT"])
    assert len(rows) == 8 * (1 + 8 * 4)
    assert rows[1 : 1 + 4] == bytes(4)  # a corner: transparent, kept
    middle = 4 * (1 + 32) + 1 + 4 * 4
    assert rows[middle : middle + 4] == b"\xff\xff\xff\xff"  # the centre: white, repainted
