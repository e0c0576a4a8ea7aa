"""The contract, held by a fuzzer: schemathesis drives the real service (`jobhook serve` under
uvicorn, on loopback) with what its own /openapi.json says is right, and with what it says is
wrong, and checks every answer against it: no 5xx, only documented statuses, content types,
headers and bodies, every schema-violating request refused, `Allow` on every 405, created
resources that can be read and deleted ones that cannot.

Reproduce a failure by hand: `./scripts/serve --no-workers` in one terminal, then the command
`schemathesis()` makes, with that server's URL (`st replay <id>` replays one test case).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.security.tokens import CallbackTokens
from tests.e2e.conftest import Process, _start, _stop, free_port

SEED = 1
#: per operation and phase: ~30 s on a 2-core machine, every phase included
MAX_EXAMPLES = 100
#: a webhook receiver that is never called: nothing listens there, and no worker sends
RECEIVER = "http://127.0.0.1:9/hooks/jobhook"
#: the callback tokens' signing key, so that the test can issue tokens the service takes
SECRET_KEY = "fuzz-secret-key-0123456789-abcdefghijklmnop"
#: a task on each of these gets real callback tokens: Apiframe's wire format signs its
#: callbacks, Vtrix's sends unsigned hints
SEEDED_TASKS = {
    "simulator": {"action": "imagine", "params": {"prompt": "a red fox in snow"}},
    "simulator-vtrix": {
        "action": "remix",
        "params": {"job_id": "mj-1", "index": 1, "prompt": "a red fox in snow"},
    },
}


def schemathesis(url: str, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        f"--config-file={config}",
        "run",
        f"{url}/openapi.json",
        "--checks=all",
        "--exclude-checks=positive_data_acceptance",
        # An endless text/event-stream: there is no answer to read to its end and check.
        "--exclude-path=/v1/events/stream",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        "--workers=1",  # one seed, one order of requests: the same run every time
        "--generation-database=none",  # nothing replayed from an earlier run
        "--request-timeout=20",
        "--no-color",
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    """jobhook in development mode (no API keys: no auth, loopback only); its /openapi.json says
    so, with no security requirement.

    Not with API keys: schemathesis's auth checks send every operation a wrong key, and past
    10 failures a minute the auth throttle answers the address 429, even with the right key,
    where the checks expect a 401 or a 2xx. Everything else a route does is the same.

    `--no-workers`: no worker runs, so nothing is ever sent to the webhook URLs the fuzzer
    makes up (the SSRF guard still looks up their host names, which never resolve to loopback;
    JOBHOOK_OUTBOUND_ALLOW opens loopback, for RECEIVER only). The embedded simulator, on the
    same loopback port, still takes submissions and calls back.
    """
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JOBHOOK_", "APIFRAME_", "APIMART_", "VTRIX_"))
    }
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        "JOBHOOK_SIMULATOR": "on",
        "JOBHOOK_SIMULATOR_STEP": "0.02",
        "JOBHOOK_LOG_FORMAT": "json",
        "JOBHOOK_OUTBOUND_ALLOW": "127.0.0.0/8",
        "JOBHOOK_SECRET_KEYS": SECRET_KEY,
    }
    process = _start(["serve", "--no-workers"], env, tmp_path / "jobhook.log", port)
    try:
        yield process
    finally:
        _stop(process)


def seed_data(url: str) -> dict[str, str]:
    """Something for the stateful phase's links to reach: an endpoint, and a finished task
    whose changes were queued for delivery (a page of deliveries to retry). Returns a task id
    per provider of SEEDED_TASKS."""
    tasks = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/v1/endpoints", json={"url": RECEIVER, "description": "fuzzed"})
        assert r.status_code == 201, r.text
        for provider, body in SEEDED_TASKS.items():
            r = client.post(
                "/v1/tasks",
                json={
                    **body,
                    "provider": provider,
                    "callback_url": RECEIVER,
                    "callback_events": ["task.progress", "task.succeeded"],
                },
            )
            assert r.status_code == 202, r.text
            tasks[provider] = r.json()["id"]
        # The signed one finishes by its callbacks; the unsigned one would need a poller (no
        # worker runs): cancelled, since a ?wait on a task that never changes waits 120 s.
        deadline = time.monotonic() + 10
        while client.get(f"/v1/tasks/{tasks['simulator']}").json()["status"] != "SUCCESS":
            assert time.monotonic() < deadline, "the seeded task never finished"
            time.sleep(0.05)
        r = client.post(f"/v1/tasks/{tasks['simulator-vtrix']}/cancel")
        assert r.status_code == 200, r.text
        assert client.get("/v1/deliveries").json()["data"]
    return tasks


def write_config(path: Path, tasks: dict[str, str]) -> Path:
    """Real callback tokens for the callback route, most of the time: without them every
    callback stops at the token (401), and the body parsers behind it are never fuzzed."""
    tokens = CallbackTokens([SECRET_KEY])
    issued = [tokens.issue(provider, task_id) for provider, task_id in tasks.items()]
    path.write_text(
        "[dictionaries.providers]\n"
        f"values = {json.dumps(list(tasks))}\n"
        "[dictionaries.tokens]\n"
        f"values = {json.dumps(issued)}\n"
        "[[operations]]\n"
        'include-operation-id = "receiveCallback"\n'
        "[operations.parameters]\n"
        '"path.provider" = { dictionary = "providers", probability = 0.8 }\n'
        '"path.token" = { dictionary = "tokens", probability = 0.8 }\n'
    )
    return path


def test_the_service_does_what_its_openapi_says(served: Process, tmp_path: Path) -> None:
    config = write_config(tmp_path / "schemathesis.toml", seed_data(served.url))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # loopback, direct
    started = time.monotonic()
    run = subprocess.run(
        schemathesis(served.url, config),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    took = time.monotonic() - started
    unhandled = [line for line in served.lines() if '"http.unhandled"' in line]
    assert run.returncode == 0 and not unhandled, (
        f"schemathesis exited {run.returncode} after {took:.0f} s\n"
        f"{run.stdout}\n{run.stderr}\n"
        "unhandled errors in the service's log:\n" + "\n".join(unhandled[:20])
    )
