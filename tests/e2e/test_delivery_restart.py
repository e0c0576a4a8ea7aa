"""Killing jobhook between the commit and the delivery loses nothing: after a restart the
webhook goes out, signed, with the same webhook-id."""

from __future__ import annotations

import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from tests.e2e.conftest import _start, _stop, free_port
from tests.e2e.test_serve import wait_done


class _Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver_port() -> int:
    _Hooks.received = []
    return free_port()


def test_a_delivery_survives_a_kill(tmp_path: Path, receiver_port: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        "JOBHOOK_SIMULATOR_STEP": "0.05",
        "JOBHOOK_LOG_FORMAT": "json",
        "JOBHOOK_OUTBOUND_ALLOW": "127.0.0.0/8",
    }
    port = free_port()
    hook = f"http://127.0.0.1:{receiver_port}/hooks"
    jobhook = _start(["serve"], env, tmp_path / "first.log", port)
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        task = client.post(
            "/v1/tasks",
            json={"action": "imagine", "params": {"prompt": "a fox"}, "callback_url": hook},
        ).json()
        assert wait_done(client, task["id"])["status"] == "SUCCESS"
        for _ in range(100):  # the receiver is down: the first attempt fails, the row waits
            [delivery] = client.get("/v1/deliveries").json()["data"]
            if delivery["attempts"] >= 1:
                break
            time.sleep(0.05)
        assert delivery["status"] == "pending" and delivery["attempts"] == 1
    jobhook.proc.send_signal(signal.SIGKILL)
    jobhook.proc.wait()

    server = ThreadingHTTPServer(("127.0.0.1", receiver_port), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    jobhook = _start(["serve"], env, tmp_path / "second.log", port)
    try:
        for _ in range(300):  # the retry is due 5 s (+-20%) after the failed attempt
            if _Hooks.received:
                break
            time.sleep(0.05)
        [(headers, body)] = _Hooks.received
        assert headers["webhook-id"] == delivery["id"]
        secret = (tmp_path / "var" / "webhook_secret").read_text().strip()
        payload = standardwebhooks.Webhook(secret).verify(body, headers)
        assert payload["type"] == "task.succeeded" and payload["data"]["id"] == task["id"]
    finally:
        _stop(jobhook)
        server.shutdown()
        server.server_close()
