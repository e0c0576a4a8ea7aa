"""The Procfile's split over real processes: the web answers, the worker polls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from tests.e2e.conftest import Process, _start, _stop, free_port
from tests.e2e.test_serve import wait_done


def test_a_poll_only_task_finishes_through_the_worker(
    split: tuple[Process, subprocess.Popen[bytes], Path],
) -> None:
    web, worker, worker_log = split
    with httpx.Client(base_url=web.url, timeout=30) as client:
        r = client.post(
            "/v1/tasks",
            json={"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "x"}},
        )
        assert r.status_code == 202, r.text
        done = wait_done(client, r.json()["id"])
        assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4

    worker.terminate()  # graceful: finish in-flight polls, then exit 0
    assert worker.wait(timeout=20) == 0
    records = [orjson.loads(x) for x in worker_log.read_text().splitlines() if x.startswith("{")]
    names = [r["event"] for r in records]
    assert "poll.result" in names and names[-1] == "workers.stopped"
    assert "poll.result" not in web.log.read_text()


def test_the_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    """Issue 15: with the Procfile split the poll and delivery counters live in the worker;
    `jobhook worker` serves them on JOBHOOK_METRICS_PORT, under the same token rule."""
    port, metrics_port = free_port(), free_port()
    token = "m" * 32
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
        "JOBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "JOBHOOK_METRICS_TOKEN": token,
    }
    web = _start(["serve", "--no-workers"], env, tmp_path / "web.log", port)
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as handle:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            env=env | {"JOBHOOK_METRICS_PORT": str(metrics_port)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=web.url, timeout=30) as client:
            r = client.post(
                "/v1/tasks",
                json={
                    "provider": "simulator-apimart",
                    "action": "imagine",
                    "params": {"prompt": "x"},
                },
            )
            assert r.status_code == 202, r.text
            assert wait_done(client, r.json()["id"])["status"] == "SUCCESS"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(metrics, headers=auth, timeout=5)
                if 'jobhook_polls_total{provider="simulator-apimart"' in answer.text:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the worker's /metrics never showed its polls"
            time.sleep(0.1)
        assert answer.status_code == 200 and "jobhook_tasks" in answer.text  # gauges too
        assert httpx.get(metrics, timeout=5).status_code == 401  # the same token rule
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).status_code == 200
        # ... and the web process's counters do not hold the worker's polls
        web_metrics = httpx.get(web.url + "/metrics", headers=auth, timeout=5).text
        assert 'jobhook_polls_total{provider="simulator-apimart"' not in web_metrics
        worker.terminate()  # graceful: the metrics server stops with it
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        _stop(web)
