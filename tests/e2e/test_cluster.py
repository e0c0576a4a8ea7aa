"""jobhook as a cluster: the Procfile on PostgreSQL, 2 web and 2 worker processes on one
database, driven through both web processes, against the standalone simulator over real HTTP.

Checks what a cluster promises: every task ends SUCCESS; each web process finds every task; no
task is polled by two workers at once (the simulator counts overlapping queries of one job);
each change is announced by one webhook (one webhook-id per task and event type), delivered
once; and killing a worker with SIGKILL mid-run loses nothing: its leases expire and the other
worker takes over.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson

from service.workers.deliverer import DEFAULT_DELIVERER_CONFIG
from tests.e2e.conftest import Process, _start, _stop, free_port
from tests.support.postgres import fresh_database
from tests.support.receiver import Receiver, running

TASKS_PER_KIND = 6


def _env(tmp: Path, database_url: str, sim: Process, public_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    return env | {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": database_url,
        "JOBHOOK_VAR_DIR": str(tmp / "var"),
        "JOBHOOK_LOG_FORMAT": "json",
        "JOBHOOK_SIMULATOR": "off",
        # Every process signs and verifies with the same keys.
        "JOBHOOK_SECRET_KEYS": "cluster-test-signing-key-0123456789abcdef",
        "JOBHOOK_WEBHOOK_SECRET": "whsec_Y2x1c3Rlci10ZXN0LXdlYmhvb2stc2VjcmV0",
        "JOBHOOK_PUBLIC_URL": public_url,
        "APIFRAME_API_KEY": "afk_cluster_test_key",
        "APIMART_API_KEY": "sk-cluster-test-key",
        "JOBHOOK_APIFRAME_BASE_URL": sim.url,
        "JOBHOOK_APIMART_BASE_URL": sim.url,
        "JOBHOOK_DEFAULT_PROVIDER": "apiframe",
        "JOBHOOK_RECONCILE_AFTER": "5",
    }


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "service", "worker"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _wait_for(log: Path, text: bytes, timeout: float = 30.0) -> None:
    """Until another process has written `text` into `log`."""
    deadline = time.monotonic() + timeout
    while text not in log.read_bytes():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} never appeared in {log}")
        time.sleep(0.05)


async def _submit(web: httpx.AsyncClient, n: int) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "imagine", "params": {"prompt": f"a fox {n}"}}
    if n % 2:
        body["provider"] = "apimart"  # poll-only: the workers' polls bring it home
    r = await web.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    task: dict[str, Any] = r.json()
    return task


async def _finished(web: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async with asyncio.timeout(120):
        while True:
            r = await web.get(f"/v1/tasks/{task_id}", params={"wait": 10})
            assert r.status_code == 200, r.text
            task: dict[str, Any] = r.json()
            if task["status"] in ("SUCCESS", "FAILURE", "CANCEL"):
                return task


async def test_two_web_and_two_worker_processes_on_one_postgres(tmp_path: Path) -> None:
    async with fresh_database() as database_url:
        sim = _start(
            ["simulator", "--step", "0.1", "--seed", "5"], dict(os.environ), tmp_path / "sim.log",
            free_port(),
        )  # fmt: skip
        port_a = free_port()
        env = _env(tmp_path, database_url, sim, f"http://127.0.0.1:{port_a}")
        processes: list[Process] = []
        workers: list[subprocess.Popen[bytes]] = []
        try:
            migrate = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "service", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert migrate.returncode == 0, migrate.stderr
            processes.append(_start(["serve", "--no-workers"], env, tmp_path / "a.log", port_a))
            processes.append(
                _start(["serve", "--no-workers"], env, tmp_path / "b.log", free_port())
            )
            workers = [_worker(env, tmp_path / f"worker{n}.log") for n in (1, 2)]
            # Slow provider answers widen the window in which two workers could poll one job.
            async with (
                httpx.AsyncClient(base_url=sim.url, timeout=10) as provider,
                running(Receiver(free_port())) as receiver,
                httpx.AsyncClient(base_url=processes[0].url, timeout=30) as web_a,
                httpx.AsyncClient(base_url=processes[1].url, timeout=30) as web_b,
            ):
                faults = await provider.post("/_faults", json={"query_delay": 0.3})
                assert faults.status_code == 200, faults.text
                endpoint = await web_b.post("/v1/endpoints", json={"url": receiver.url()})
                assert endpoint.status_code == 201, endpoint.text
                webs = (web_a, web_b)
                tasks = [await _submit(webs[n % 2], n) for n in range(2 * TASKS_PER_KIND)]
                # The workers are busy with them now (each poll takes 0.3 s) ...
                await asyncio.to_thread(_wait_for, tmp_path / "worker1.log", b'"poll.result"')
                workers[0].send_signal(signal.SIGKILL)  # ... and one dies, polls in flight
                workers[0].wait(timeout=10)
                more = [await _submit(webs[n % 2], n) for n in range(4)]
                done = [await _finished(web_b, t["id"]) for t in [*tasks, *more]]
                assert [t["status"] for t in done] == ["SUCCESS"] * len(done), done
                for web in webs:  # each web process finds every task, by either id
                    for task in done:
                        r = await web.get(f"/v1/tasks/{task['provider_task_id']}")
                        assert r.status_code == 200 and r.json()["id"] == task["id"]
                await _every_change_delivered(receiver, done)
                overlaps = (await provider.get("/_faults")).json()["overlaps"]
                assert overlaps == 0, "two workers polled one job at once"
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.terminate()
                    worker.wait(timeout=20)
            for process in processes:
                _stop(process)
            _stop(sim)


async def _every_change_delivered(receiver: Receiver, done: list[dict[str, Any]]) -> None:
    """One webhook-id per change (task and sequence: a change is announced once), each received;
    a webhook-id may come twice only if the killed worker was sending it (at least once)."""
    wanted = {task["id"] for task in done}
    async with asyncio.timeout(60):
        while True:
            seen = {orjson.loads(r.body)["data"]["id"] for r in receiver.received
                    if orjson.loads(r.body)["type"] == "task.succeeded"}  # fmt: skip
            if wanted <= seen:
                break
            await asyncio.sleep(0.2)
    ids_per_change: dict[tuple[str, int], set[str]] = {}
    for r in receiver.received:  # a change is a task's sequence number
        body = orjson.loads(r.body)
        ids_per_change.setdefault((body["data"]["id"], body["data"]["sequence"]), set()).add(
            r.headers["webhook-id"]
        )
    assert all(len(ids) == 1 for ids in ids_per_change.values()), ids_per_change
    # The killed worker had at most `per_endpoint` deliveries in flight to this receiver: those
    # (and only those) may be sent again once their leases end; the receiver dedupes them.
    repeats = Counter(r.headers["webhook-id"] for r in receiver.received)
    resent = sum(n - 1 for n in repeats.values())
    assert resent <= DEFAULT_DELIVERER_CONFIG.per_endpoint, repeats
