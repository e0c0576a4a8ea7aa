"""End to end over real HTTP: uvicorn, the simulator in its own process, signed webhooks back."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.conftest import Process, free_port


def wait_done(client: httpx.Client, task_id: str) -> dict[str, Any]:
    for _ in range(60):
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}", params={"wait": 5}).json()
        if task["status"] in ("SUCCESS", "FAILURE", "CANCEL"):
            return task
    raise AssertionError(f"{task_id} never finished: {task}")


def test_imagine_then_upsample_on_apiframe_wire_format(stack: tuple[Process, Process]) -> None:
    jobhook, sim = stack
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        r = client.post(
            "/v1/tasks",
            json={
                "provider": "apiframe",
                "action": "imagine",
                "params": {"prompt": "a red fox in snow", "aspect_ratio": "16:9"},
            },
        )
        assert r.status_code == 202, r.text
        imagine = wait_done(client, r.json()["id"])
        assert imagine["status"] == "SUCCESS" and imagine["progress"] == 100
        assert len(imagine["result"]["images"]) == 4 and imagine["result"]["grid_url"]
        assert imagine["result"]["grid_url"].startswith(sim.url)
        png = httpx.get(imagine["result"]["images"][0])
        assert png.content.startswith(b"\x89PNG")

        r = client.post(
            "/v1/tasks",
            json={"action": "upscale", "parent_id": imagine["id"], "params": {"index": 2}},
        )
        assert r.status_code == 202, r.text
        upscale = wait_done(client, r.json()["id"])
        assert upscale["status"] == "SUCCESS" and upscale["provider"] == "apiframe"
        events = client.get(f"/v1/tasks/{upscale['id']}/events").json()["data"]
        assert events[0]["source"] == "api"
        assert events[-1]["type"] == "succeeded" and events[-1]["source"] == "callback"

    records = [orjson.loads(line) for line in jobhook.lines() if line.startswith("{")]
    names = [r["event"] for r in records]
    assert "task.submitted" in names
    assert any(r["event"] == "task.transition" and r["source"] == "callback" for r in records)
    assert all({"event", "level", "timestamp"} <= r.keys() for r in records)
    assert "afk_e2e_secret_key" not in jobhook.log.read_text()


def test_embedded_simulator_is_the_default_provider(stack: tuple[Process, Process]) -> None:
    jobhook, _ = stack
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        r = client.post("/v1/tasks", json={"action": "imagine", "params": {"prompt": "a cat"}})
        assert r.status_code == 202, r.text
        assert r.json()["provider"] == "simulator"
        done = wait_done(client, r.json()["id"])
        assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
        providers = client.get("/readyz").json()["providers"]
        assert {"apiframe", "simulator", "simulator-apimart", "simulator-vtrix"} == set(providers)


JOBHOOK = Path(sys.executable).with_name("jobhook")  # the console script, as users run it


def clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBHOOK_", "APIFRAME_", "APIMART_", "VTRIX_"))
    }
    return env | {"PYTHONUNBUFFERED": "1", "JOBHOOK_VAR_DIR": str(tmp_path / "var")} | values


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOBHOOK_MAX_BODY_BYTES", "inf"),
        ("JOBHOOK_MAX_UPLOAD_BYTES", "nan"),
        ("JOBHOOK_RUN_TIMEOUT", "nan"),
        ("JOBHOOK_PUBLIC_URL", "http://[::1/"),
        ("JOBHOOK_SECRET_KEYS", "k"),
        ("JOBHOOK_METRICS_TOKEN", "short"),
        ("JOBHOOK_DATABASE_URL", "sqlite:///not-a-dir/jobhook.sqlite3"),
        ("JOBHOOK_LOG_FILE", "not-a-dir/jobhook.log"),
    ],
)
def test_serve_with_a_bad_setting_says_so_in_one_line(
    tmp_path: Path, name: str, value: str
) -> None:
    (tmp_path / "not-a-dir").write_text("a file where a directory is expected\n")
    run = subprocess.run(
        [str(JOBHOOK), "serve", "--port", str(free_port())],
        env=clean_env(tmp_path, **{name: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    [line] = run.stderr.splitlines()
    assert line.startswith(f"jobhook: {name}: "), line
    assert run.stdout == ""


#: `jobhook serve` with log lines held in their batch for 30 s instead of 50 ms: what reaches the
#: file before the process ends is what jobhook flushed itself (atexit does not run on SIGTERM)
SERVE_WITH_SLOW_BATCHES = (
    "import sys; import service.logging as logging_; logging_._Batched.DELAY = 30.0; "
    "from service.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("batches", ["as shipped", "held for 30 s"])
def test_sigterm_still_logs_jobhook_stopped_to_the_log_file(tmp_path: Path, batches: str) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown, so atexit never runs: the lifespan
    flushes the batched log itself. As shipped, the 50 ms batch timer often wins the race
    anyway; with batches held for 30 s, only that flush can write the last lines."""
    port = free_port()
    log_file = tmp_path / "logs" / "jobhook.log"
    env = clean_env(
        tmp_path,
        JOBHOOK_DATABASE_URL=f"sqlite:///{tmp_path}/data/jobhook.sqlite3",
        JOBHOOK_LOG_FILE=str(log_file),
        JOBHOOK_LOG_FORMAT="json",
    )
    command = [str(JOBHOOK)]
    if batches == "held for 30 s":
        command = [sys.executable, "-c", SERVE_WITH_SLOW_BATCHES]
    with (tmp_path / "out.log").open("wb") as out:
        proc = subprocess.Popen(
            [*command, "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "out.log").read_text()
            assert time.monotonic() < deadline, "jobhook serve did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == -signal.SIGTERM  # uvicorn's re-raised signal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [orjson.loads(line)["event"] for line in log_file.read_bytes().splitlines()]
    assert "jobhook.started" in events
    assert events[-1] == "jobhook.stopped", events[-5:]
    # secrets at rest: the files jobhook made are its owner's only
    modes = {
        p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in (
            log_file.parent,
            log_file,
            tmp_path / "data",
            tmp_path / "data" / "jobhook.sqlite3",
            tmp_path / "var",
            tmp_path / "var" / "secret_key",
            tmp_path / "var" / "webhook_secret",
        )
    }
    assert modes == {
        "logs": 0o700,
        "logs/jobhook.log": 0o600,
        "data": 0o700,
        "data/jobhook.sqlite3": 0o600,
        "var": 0o700,
        "var/secret_key": 0o600,
        "var/webhook_secret": 0o600,
    }
