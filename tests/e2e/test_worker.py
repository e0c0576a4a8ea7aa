"""The Procfile's split over real processes: the web answers, the worker polls."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import orjson

from tests.e2e.conftest import Process
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
