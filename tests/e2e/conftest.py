"""Real processes on loopback: jobhook under uvicorn, and the standalone provider simulator."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Process:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def _start(args: list[str], env: dict[str, str], log: Path, port: int) -> Process:
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", *args, "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code in (200, 404):
                return Process(url=url, proc=proc, log=log)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{args[0]} did not start: {log.read_text()}")


def _stop(p: Process) -> None:
    p.proc.terminate()
    try:
        p.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.proc.kill()
        p.proc.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    """(jobhook, simulator): jobhook has the embedded simulator and `apiframe` pointed at the
    standalone simulator, which calls back over real HTTP."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    base["PYTHONUNBUFFERED"] = "1"
    sim = _start(
        ["simulator", "--step", "0.05", "--seed", "3"], base, tmp_path / "sim.log", free_port()
    )
    env = base | {
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
        "APIFRAME_API_KEY": "afk_e2e_secret_key",
        "JOBHOOK_APIFRAME_BASE_URL": sim.url,
    }
    jobhook = _start(["serve"], env, tmp_path / "jobhook.log", free_port())
    try:
        yield jobhook, sim
    finally:
        _stop(jobhook)
        _stop(sim)


@pytest.fixture
def split(tmp_path: Path) -> Iterator[tuple[Process, subprocess.Popen[bytes], Path]]:
    """The Procfile's split: `jobhook serve --no-workers` and `jobhook worker` on one database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
        "JOBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    web = _start(["serve", "--no-workers"], env, tmp_path / "web.log", port)
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield web, worker, worker_log
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        _stop(web)
