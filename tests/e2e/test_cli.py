"""The `jobhook` client commands as a user runs them: subprocesses against a real `jobhook serve`
(simulator steps of 0.05 s), checked by their stdout, stderr and exit codes."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from service.demo import mask_png
from tests.e2e.conftest import Process, _start, _stop, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
    }
    process = _start(["serve"], env, tmp / "jobhook.log", free_port())
    try:
        yield process
    finally:
        _stop(process)


def jobhook(server: Process, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
    env["JOBHOOK_URL"] = server.url
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_submit_wait_prints_the_id_progress_and_the_result_urls(server: Process) -> None:
    run = jobhook(server, "submit", "imagine", "--param", "prompt=a red fox", "--wait")
    assert run.returncode == 0, run.stderr
    task_id, status, *urls, expires = run.stdout.splitlines()
    assert task_id.startswith("task_") and len(task_id) == 31
    assert status == f"SUCCESS {task_id} (imagine on simulator, 100%)"
    assert [u.split()[0] for u in urls] == ["grid", "image", "image", "image", "image"]
    # Apiframe's dialect: results are purged 24 h after completion, and the CLI says when
    assert expires.split()[0] == "expires" and expires.split()[1].endswith("Z")
    assert all(u.split()[-1].startswith(server.url + "/_sim/images/") for u in urls)
    # stderr is not a terminal: plain progress lines, the last one the end
    progress = run.stderr.splitlines()
    assert progress and all(line.startswith(task_id) for line in progress)
    assert "\r" not in run.stderr and progress[-1].split()[1:3] == ["SUCCESS", "100%"]

    shown = jobhook(server, "status", task_id)
    assert shown.returncode == 0 and shown.stdout.splitlines() == [status, *urls, expires]
    as_json = orjson.loads(jobhook(server, "status", task_id, "--json").stdout)
    assert as_json["id"] == task_id and len(as_json["result"]["images"]) == 4

    listed = jobhook(server, "tasks", "--action", "imagine", "--status", "SUCCESS")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "PROVIDER", "ACTION", "STATUS", "PROGRESS", "CREATED"]
    assert any(
        row.split()[:5] == [task_id, "simulator", "imagine", "SUCCESS", "100%"] for row in rows
    )
    page = orjson.loads(jobhook(server, "tasks", "--limit", "1", "--json").stdout)
    assert len(page["data"]) == 1


def test_follow_up_by_parent_and_json_params(server: Process) -> None:
    grid = jobhook(
        server,
        "submit",
        "imagine",
        "--provider",
        "simulator-apimart",
        "--param",
        "prompt=a product photo",
        "--param",
        'image_urls=["https://93.184.215.14/p.png"]',
        "--param",
        "iw=1.5",
        "--json",
        "--wait",
    )
    assert grid.returncode == 0, grid.stderr
    parent = orjson.loads(grid.stdout)
    assert parent["params"]["image_urls"] == ["https://93.184.215.14/p.png"]
    assert parent["params"]["iw"] == 1.5
    up = jobhook(server, "submit", "upscale", "--parent", parent["id"], "-p", "index=2", "--wait")
    assert up.returncode == 0, up.stderr
    assert "SUCCESS" in up.stdout and "(upscale on simulator-apimart, 100%)" in up.stdout


def test_a_failed_task_exits_1(server: Process) -> None:
    run = jobhook(server, "submit", "imagine", "--param", "prompt=a fox [fail]", "--wait")
    assert run.returncode == 1
    lines = run.stdout.splitlines()
    assert lines[1].startswith("FAILURE ") and lines[2].startswith("  error ")
    # without --wait the submission itself succeeded
    quick = jobhook(server, "submit", "imagine", "--param", "prompt=another [fail]")
    assert quick.returncode == 0 and quick.stdout.strip().startswith("task_")


def test_api_errors_are_one_line_with_exit_2(server: Process) -> None:
    run = jobhook(server, "submit", "upscale", "--parent", "task_nope", "--param", "index=9")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "jobhook: params.index: expected an integer from 1 to 4\n"
    missing = jobhook(server, "status", "task_nope")
    assert missing.returncode == 2 and missing.stderr == "jobhook: no task task_nope\n"


def test_inpaint_stops_at_modal_and_the_modal_command_finishes_it(
    server: Process, tmp_path: Path
) -> None:
    grid = orjson.loads(
        jobhook(
            server,
            "submit",
            "imagine",
            "--provider",
            "simulator-apimart",
            "-p",
            "prompt=a room",
            "--wait",
            "--json",
        ).stdout
    )
    up = orjson.loads(
        jobhook(
            server, "submit", "upscale", "--parent", grid["id"], "-p", "index=1", "--wait", "--json"
        ).stdout
    )
    inpaint = jobhook(server, "submit", "inpaint", "--parent", up["id"], "--wait")
    assert inpaint.returncode == 0, inpaint.stderr
    task_id, status, hint = inpaint.stdout.splitlines()
    assert status.startswith(f"MODAL {task_id}")
    assert f"jobhook modal {task_id}" in hint and f"/v1/tasks/{task_id}/modal" in hint
    mask = tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    done = jobhook(
        server, "modal", task_id, "--prompt", "a red sofa", "--mask-file", str(mask), "--wait"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"SUCCESS {task_id} (inpaint on simulator-apimart, 100%)")
    assert done.stdout.count("  image ") == 4
    again = jobhook(server, "modal", task_id, "--mask-file", str(mask))
    assert again.returncode == 2 and "MODAL" in again.stderr


def test_demo_runs_every_flow(server: Process) -> None:
    run = jobhook(server, "demo", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    for flow in "ABCDE":
        assert f"\nFlow {flow}:" in run.stdout
    assert "MODAL 15%" in run.stdout and "$ jobhook modal task_" in run.stdout
    assert "all 5 flows (10 steps) ended as expected" in run.stdout
    table = run.stdout[run.stdout.index("FLOW  STEP") :].splitlines()
    rows = [row for row in table[1:] if row.startswith(tuple("ABCDE"))]
    assert len(rows) == 10 and all(row.endswith("ok") for row in rows)


def test_tail_shows_the_server_log(server: Process) -> None:
    run = jobhook(server, "submit", "imagine", "--param", "prompt=for the log", "--wait")
    task_id = run.stdout.split()[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
        task_id in line and '"to_status":"SUCCESS"' in line for line in server.lines()
    ):
        time.sleep(0.05)  # the log line follows the commit that ended the wait
    tail = jobhook(server, "tail", str(server.log), "--event", "task.", "--task", task_id)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert lines and "\x1b" not in tail.stdout
    assert {line.split()[2] for line in lines} <= {"task.submitted", "task.transition"}
    assert all(task_id in line for line in lines)
    assert any("to_status=SUCCESS" in line for line in lines)
    everything = jobhook(server, "tail", str(server.log), "--level", "warning").stdout
    assert "jobhook.dev_mode" in everything and "task.transition" not in everything


def test_tail_follow_sees_new_lines(server: Process) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
    argv = ["tail", "-f", "-n", "0", str(server.log), "--event", "task.submitted"]
    follower = subprocess.Popen(
        [sys.executable, "-m", "service", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout or ()])
    reader.start()
    try:
        time.sleep(1.0)  # `-n 0`: what the log holds already is skipped
        assert lines.empty()
        task_id = jobhook(server, "submit", "imagine", "--param", "prompt=followed").stdout.strip()
        seen = lines.get(timeout=20)
        assert task_id in seen and "task.submitted" in seen
    finally:
        follower.terminate()
        follower.wait(timeout=10)
        reader.join(timeout=10)
        follower.stdout.close()
