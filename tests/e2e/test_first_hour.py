"""A newcomer's first hour (issue 9), through the real console script `jobhook` (and the
`scripts/jobhook` wrapper) against real `jobhook serve` processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Process, _start, _stop, free_port

ROOT = Path(__file__).resolve().parents[2]
#: The console script pip installed beside the interpreter running the tests.
JOBHOOK = str(Path(sys.executable).parent / "jobhook")


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
    }
    return env | extra


def jobhook(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBHOOK, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("hour")
    process = _start(["serve"], clean_env(tmp), tmp / "jobhook.log", free_port())
    try:
        yield process
    finally:
        _stop(process)


def client_env(server: Process) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
    return env | {"JOBHOOK_URL": server.url, "PYTHONUNBUFFERED": "1"}


def test_the_wrapper_runs_the_cli_from_any_directory(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(ROOT / "scripts" / "jobhook"), "sample-mask", "mask.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "mask.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_a_port_out_of_range_is_refused_in_one_line(tmp_path: Path) -> None:
    run = jobhook("serve", "--port", "80000", env=clean_env(tmp_path))
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "jobhook: argument --port: expected a port from 1 to 65535, got '80000' "
        "(see `jobhook serve --help`)"
    ]


def test_a_busy_port_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = jobhook("serve", "--port", str(port), env=clean_env(tmp_path))
    assert run.returncode == 2
    out = run.stdout + run.stderr
    assert f"jobhook: cannot listen on 127.0.0.1:{port}: the port is in use" in out
    assert "jobhook.started" not in out and "Traceback" not in out


def test_a_worker_that_cannot_know_the_web_process_says_so(tmp_path: Path) -> None:
    run = jobhook("worker", env=clean_env(tmp_path))
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("jobhook: JOBHOOK_PUBLIC_URL: jobhook worker needs the web process")


def test_a_worker_finds_the_web_process_off_port_8000(tmp_path: Path) -> None:
    # The Procfile split on another port, no JOBHOOK_PUBLIC_URL: the worker reads what serve
    # recorded in ./var, so an APIMart (poll-only) task finishes.
    env = clean_env(tmp_path)
    web = _start(["serve", "--no-workers"], env, tmp_path / "web.log", free_port())
    worker = subprocess.Popen(
        [JOBHOOK, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        body = {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "x"}}
        with httpx.Client(base_url=web.url, timeout=30) as http:
            task = http.post("/v1/tasks", json=body).json()
            for _ in range(100):
                task = http.get(f"/v1/tasks/{task['id']}", params={"wait": 5}).json()
                if task["status"] == "SUCCESS":
                    break
        assert task["status"] == "SUCCESS", task
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        _stop(web)


def test_the_standalone_simulator_says_where_it_is(tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        [JOBHOOK, "simulator", "--port", str(port)],
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert '"event":"simulator.started"' in line and f"http://127.0.0.1:{port}" in line
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_status_of_a_failed_task_exits_1(server: Process) -> None:
    env = client_env(server)
    submitted = jobhook("submit", "imagine", "-p", "prompt=a fox [fail]", "--wait", env=env)
    assert submitted.returncode == 1, submitted.stderr
    task_id = submitted.stdout.splitlines()[0]
    status = jobhook("status", task_id, env=env)
    assert status.returncode == 1 and status.stdout.startswith("FAILURE")
    # ... and a failed task is not 100% done.
    assert "100%" not in status.stdout.splitlines()[0]


def test_the_fault_switchboard_needs_no_key_in_dev_mode(server: Process) -> None:
    # A Retry-After longer than a submission may wait (5 s): the task waits in jobhook's
    # submission queue (issue 13) rather than failing, and is sent once it is over.
    r = httpx.post(f"{server.url}/_sim/_faults", json={"rate_limit": 1, "retry_after": 6})
    assert r.status_code == 200, r.text
    env = client_env(server)
    run = jobhook("submit", "imagine", "--provider", "simulator-apimart", "-p", "prompt=x", env=env)
    assert run.returncode == 0, run.stderr
    task_id = run.stdout.splitlines()[0]
    status = jobhook("status", task_id, env=env)
    assert status.stdout.startswith("NOT_START"), status.stdout
    # jobhook holds the provider for every request until the Retry-After is over; the tests
    # after this one share the server.
    time.sleep(6.2)


def test_the_sample_mask_finishes_a_modal_task(server: Process) -> None:
    env = client_env(server)

    def submit(*args: str) -> str:
        run = jobhook("submit", *args, "--wait", env=env)
        assert run.returncode == 0, run.stderr
        return run.stdout.splitlines()[0]

    grid = submit("imagine", "--provider", "simulator-apimart", "-p", "prompt=a sofa")
    upscaled = submit("upscale", "--parent", grid, "-p", "index=1")
    inpaint = submit("inpaint", "--parent", upscaled)
    run = jobhook("modal", inpaint, "--prompt", "red leather", "--sample-mask", "--wait", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("SUCCESS")


def test_listen_prints_each_delivery_verified_and_cleans_up(server: Process) -> None:
    env = client_env(server)
    with subprocess.Popen(
        [JOBHOOK, "listen", "--events", "task.submitted,task.succeeded"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as listener:
        try:
            assert listener.stderr is not None and listener.stdout is not None
            ready = listener.stderr.readline()
            assert "is endpoint ep_" in ready, ready
            run = jobhook("submit", "imagine", "-p", "prompt=a webhook", "--wait", env=env)
            assert run.returncode == 0, run.stderr
            task_id = run.stdout.splitlines()[0]
            lines = [listener.stdout.readline(), listener.stdout.readline()]
            assert all(task_id in line and "verified" in line for line in lines), lines
            assert "task.submitted" in lines[0] and "task.succeeded" in lines[1]
            assert "NOT VERIFIED" not in "".join(lines)
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(timeout=15)
    assert listener.returncode == 0
    assert httpx.get(f"{server.url}/v1/endpoints").json()["data"] == []


def test_backup_copies_the_database_while_jobhook_runs(server: Process, tmp_path: Path) -> None:
    env = client_env(server)
    for n in range(3):
        assert jobhook("submit", "imagine", "-p", f"prompt=fox {n}", env=env).returncode == 0
    database = server.log.parent / "jobhook.sqlite3"
    with sqlite3.connect(database) as live:
        (expected,) = live.execute("SELECT count(*) FROM tasks").fetchone()
    target = tmp_path / "copy.sqlite3"
    backup_env = clean_env(server.log.parent)
    run = jobhook("backup", str(target), env=backup_env)
    assert run.returncode == 0, run.stderr
    copied = int(run.stdout.split("(")[1].split()[0])  # "... to FILE (N tasks, B bytes)"
    assert copied >= expected  # the server may have added tasks meanwhile
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM tasks").fetchone()[0] >= expected
    again = jobhook("backup", str(target), env=backup_env)
    assert again.returncode == 2 and "exists" in again.stderr


def test_a_worker_refuses_a_recorded_web_process_that_is_gone(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir(mode=0o700)
    (tmp_path / "var" / "public_url").write_text(f"http://127.0.0.1:{free_port()}\n")
    run = jobhook("worker", env=clean_env(tmp_path))
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert "does not answer; start `jobhook serve` first" in line


def test_a_closed_pipe_is_not_a_traceback(server: Process) -> None:
    env = client_env(server)
    task_id = jobhook("submit", "imagine", "-p", "prompt=x", env=env).stdout.strip()
    run = subprocess.run(
        ["bash", "-c", f"{JOBHOOK} status {task_id} --wait | head -c 1"],  # the pipe is the point
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0 and run.stdout and "Traceback" not in run.stderr
