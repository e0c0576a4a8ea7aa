"""`jobhook bench`: signed-callback ingest against one uvicorn worker, beside bare Starlette.

Both servers run as real processes on loopback and are loaded by wrk with the same requests
(precomputed, Apiframe-signed progress callbacks), so the ratio is what jobhook's work costs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.providers import simulator_key
from service.providers.apiframe import sign_body

#: What the bare GET /v1/tasks/{id} answers (with the id asked for): a finished task's shape,
#: about 600 bytes of JSON.
_BARE_TASK = {
    "id": "",
    "provider": "simulator",
    "action": "imagine",
    "status": "SUCCESS",
    "progress": 100,
    "provider_task_id": "6f1c1f4e-3b7a-4c55-9d5e-2f0a8b1c7d93",
    "parent_id": None,
    "params": {"prompt": "a lighthouse at dusk"},
    "result": {"images": [f"https://cdn.test/6f1c1f4e-{n}.png" for n in range(1, 5)]},
    "error": None,
    "metadata": None,
    "callback_url": None,
    "callback_events": ["task.modal", "task.succeeded", "task.failed", "task.cancelled"],
    "sequence": 5,
    "created_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:36.000Z",
    "finished_at": "2026-01-01T00:00:36.000Z",
}


def bare_app() -> Starlette:
    """The bare stack: the same route shapes, reading the body and answering JSON; GET
    /v1/tasks/{id} answers a task-shaped body of about 600 bytes (`jobhook bench` lookup)."""

    async def callback(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    async def task(request: Request) -> Response:
        body = orjson.dumps({**_BARE_TASK, "id": request.path_params["id"]})
        return Response(body, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/callbacks/{provider}/{token}", callback, methods=["POST"]),
            Route("/v1/tasks/{id}", task, methods=["GET"]),
        ]
    )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("a benchmark server exited early")
        try:
            httpx.post(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _lua(requests: list[tuple[str, bytes, str]], threads: int = 2) -> str:
    """A wrk script for `threads` threads, thread t cycling through requests t, t + threads, ...
    (interleaved requests: each thread's name other tasks). They are formatted in `init`, once
    wrk has set its Host header: formatted when the script loads, they would have none, and
    jobhook's loopback guard answers a request without Host 421."""
    lines = [
        "local reqs, count = {}, 0",
        "setup = function(thread) thread:set('first', count); count = count + 1 end",
        "init = function(args)",
    ]
    for i, (path, body, signature) in enumerate(requests):
        lines.append(
            f"  if first == {i % threads} then reqs[#reqs + 1] = wrk.format('POST', '{path}', "
            f"{{['Content-Type']='application/json', ['X-Webhook-Signature']='{signature}'}}, "
            f"'{body.decode()}') end"
        )
    lines += [
        "end",
        "local i = 0",
        "request = function() i = i % #reqs + 1; return reqs[i] end",
    ]
    return "\n".join(lines)


def _wrk(
    url: str, script: Path, seconds: int, connections: int, threads: int = 2
) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def latency(pct: str) -> float:
        m = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {
        "rps": rps,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "errors": float(sum(map(int, errors.groups()))) if errors else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def _env(work: Path, database_url: str, **more: str) -> dict[str, str]:
    """A jobhook process's environment: ours without JOBHOOK_*, a quiet simulator, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
    return env | {
        "JOBHOOK_DATABASE_URL": database_url,
        "JOBHOOK_VAR_DIR": str(work / "var"),
        # The simulator stays quiet (a step a minute, the most allowed); wrk is the provider.
        "JOBHOOK_SIMULATOR_STEP": "60",
        "JOBHOOK_LOG_FORMAT": "json",
        **more,
    }


def _start(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m ARGV...`, its output into `log`."""
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", *argv], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def _bare(port: int, log: Path) -> subprocess.Popen[bytes]:
    return _start(
        ["uvicorn", "--factory", "service.bench:bare_app", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
        log,
    )  # fmt: skip


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=15)


def _signed_callbacks(
    urls: list[str], secret: str, tasks: int, *, interleave: bool = False
) -> list[list[tuple[str, bytes, str]]]:
    """`tasks` real tasks, made through the jobhook at `urls` in turn (task n through
    urls[n % len(urls)]), and for each 50 signed progress callbacks, grouped by that URL: task
    by task, or with `interleave` round by round (each task's 1%, then each task's 3%, ...), so
    that the requests in flight at once name different tasks, as a provider's would."""
    from service.config import Settings
    from service.security.tokens import CallbackTokens

    settings = Settings(secret_keys=(secret,))
    tokens, sim_key = CallbackTokens(settings.secret_keys), simulator_key(settings)
    groups: list[list[list[tuple[str, bytes, str]]]] = [[] for _ in urls]
    for n in range(tasks):
        r = httpx.post(
            urls[n % len(urls)] + "/v1/tasks",
            json={"action": "imagine", "params": {"prompt": "b"}},
            timeout=30,
        )
        if r.status_code != 202:
            raise RuntimeError(f"POST /v1/tasks answered {r.status_code}: {r.text[:200]}")
        task = r.json()
        path = f"/v1/callbacks/simulator/{tokens.issue('simulator', task['id'])}"
        callbacks = []
        for progress in range(1, 100, 2):
            body = orjson.dumps({
                "event": "progress", "jobId": task["provider_task_id"],
                "status": "PROCESSING", "progress": progress, "model": "midjourney",
            })  # fmt: skip
            callbacks.append((path, body, sign_body(sim_key, body)))
        groups[n % len(urls)].append(callbacks)
    if interleave:
        return [[r for round_ in zip(*group, strict=True) for r in round_] for group in groups]
    return [[r for callbacks in group for r in callbacks] for group in groups]


def main(*, seconds: int = 10, connections: int = 64, tasks: int = 100) -> int:
    if shutil.which("wrk") is None:
        print("jobhook bench: needs wrk (apt-get install wrk; scripts/bench installs it)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="jobhook-bench-"))
    env = _env(work, f"sqlite:///{work}/bench.sqlite3")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bare_port, jh_port = _port(), _port()
        procs.append(_bare(bare_port, work / "bare.log"))
        procs.append(
            _start(["service", "serve", "--port", str(jh_port)], work / "jobhook.log", env)
        )
        bare, jobhook = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{jh_port}"
        _wait(bare + "/v1/callbacks/x/y", procs[0])
        _wait(jobhook + "/healthz", procs[1])

        # Real tasks, each with its callback URL, then signed progress callbacks for them.
        secret = (work / "var" / "secret_key").read_text().strip()
        [requests] = _signed_callbacks([jobhook], secret, tasks)
        script = work / "callbacks.lua"
        script.write_text(_lua(requests))

        results = {
            "bare starlette": _wrk(bare, script, seconds, connections),
            "jobhook callbacks": _wrk(jobhook, script, seconds, connections),
        }
    finally:
        _stop(procs)
    base = results["bare starlette"]["rps"]
    print(f"wrk -t2 -c{connections} -d{seconds}s, {len(requests)} distinct signed callbacks")
    print(f"{'server':<20}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, row in results.items():
        print(
            f"{name:<20}{row['rps']:>10.0f}{row['rps'] / base:>8.2f}"
            f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['non_2xx']:>9.0f}"
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0
