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


def bare_app() -> Starlette:
    """The bare stack: the same route shape, reading the body and answering JSON."""

    async def callback(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/v1/callbacks/{provider}/{token}", callback, methods=["POST"])])


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


def _lua(requests: list[tuple[str, bytes, str]]) -> str:
    lines = ["local reqs = {}"]
    for i, (path, body, signature) in enumerate(requests, 1):
        lines.append(
            f"reqs[{i}] = wrk.format('POST', '{path}', "
            f"{{['Content-Type']='application/json', ['X-Webhook-Signature']='{signature}'}}, "
            f"'{body.decode()}')"
        )
    lines += [
        "local i = 0",
        "request = function() i = i % #reqs + 1; return reqs[i] end",
    ]
    return "\n".join(lines)


def _wrk(url: str, script: Path, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)

    def latency(pct: str) -> float:
        m = re.search(rf"{pct}%\s+([\d.]+)(us|ms|s)", out)
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {
        "rps": rps,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def main(*, seconds: int = 10, connections: int = 64, tasks: int = 100) -> int:
    if shutil.which("wrk") is None:
        print("jobhook bench: needs wrk (apt-get install wrk; scripts/bench installs it)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="jobhook-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
    env |= {
        "JOBHOOK_DATABASE_URL": f"sqlite:///{work}/bench.sqlite3",
        "JOBHOOK_VAR_DIR": str(work / "var"),
        "JOBHOOK_SIMULATOR_STEP": "3600",  # the simulator stays quiet; wrk is the provider
        "JOBHOOK_LOG_FORMAT": "json",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bare_port, jh_port = _port(), _port()
        with (work / "bare.log").open("wb") as bare_log, (work / "jobhook.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "service.bench:bare_app",
                 "--port", str(bare_port), "--log-level", "warning", "--no-access-log"],
                stdout=bare_log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(jh_port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        bare, jobhook = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{jh_port}"
        _wait(bare + "/v1/callbacks/x/y", procs[0])
        _wait(jobhook + "/healthz", procs[1])

        # Real tasks, each with its callback URL, then signed progress callbacks for them.
        from service.config import Settings
        from service.security.tokens import CallbackTokens

        secret = (work / "var" / "secret_key").read_text().strip()
        settings = Settings(secret_keys=(secret,))
        tokens, sim_key = CallbackTokens(settings.secret_keys), simulator_key(settings)
        requests: list[tuple[str, bytes, str]] = []
        with httpx.Client(base_url=jobhook, timeout=30) as client:
            for _ in range(tasks):
                r = client.post("/v1/tasks", json={"action": "imagine", "params": {"prompt": "b"}})
                task = r.json()
                path = f"/v1/callbacks/simulator/{tokens.issue('simulator', task['id'])}"
                for progress in range(1, 100, 2):
                    body = orjson.dumps({
                        "event": "progress", "jobId": task["provider_task_id"],
                        "status": "PROCESSING", "progress": progress, "model": "midjourney",
                    })  # fmt: skip
                    requests.append((path, body, sign_body(sim_key, body)))
        script = work / "callbacks.lua"
        script.write_text(_lua(requests))

        results = {
            "bare starlette": _wrk(bare, script, seconds, connections),
            "jobhook callbacks": _wrk(jobhook, script, seconds, connections),
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=15)
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
