"""Hostile input in front of the routes: in development mode (no keys, no auth) a web page on the
operator's machine must not reach jobhook by DNS rebinding (a foreign Host) nor change anything
with a cross-site form (CSRF); with keys, wrong keys are logged and throttled per address.

Only loopback is ever connected to: `attacker.example` appears as a header value only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.web.guard import host_name, is_loopback_name
from service.web.limits import AuthThrottle
from tests.conftest import open_app
from tests.integration.test_api_tasks import assert_problem, submit

NEVER = {"action": "imagine", "params": {"prompt": "a fox that never ends [never]"}}
ATTACKER = "http://attacker.example"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def app_of(client: httpx.AsyncClient) -> Any:
    return client.app  # type: ignore[attr-defined]


async def status_of(client: httpx.AsyncClient, task_id: str) -> str:
    r = await client.get(f"/v1/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


# ---- DNS rebinding: the Host header -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8000",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "[::2]:8000",
        "0.0.0.0:8000",
        "10.0.0.5:8000",
        "127.0.0.1:http",
        "",
    ],
)
@pytest.mark.parametrize("path", ["/v1/tasks", "/", "/metrics", "/v1/events/stream"])
async def test_dev_mode_refuses_foreign_host_names(
    client: httpx.AsyncClient, host: str, path: str
) -> None:
    r = await client.get(path, headers={"Host": host})
    body = assert_problem(r, 421)
    assert "loopback host names" in body["detail"]


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8000",
        "localhost.:8000",
        "dashboard.localhost:8000",
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.1.2.3:9",
        "[::1]",
        "[::1]:8000",
    ],
)
async def test_dev_mode_serves_loopback_host_names(client: httpx.AsyncClient, host: str) -> None:
    r = await client.get("/v1/tasks", headers={"Host": host})
    assert r.status_code == 200, r.text


async def test_a_callback_is_refused_under_a_foreign_host_too(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/callbacks/simulator/any-token", content=b"{}", headers={"Host": "attacker.example"}
    )
    assert_problem(r, 421)


async def test_with_keys_the_host_is_not_checked(settings: Settings) -> None:
    keyed = replace(settings, api_keys={"alice-key-123": "alice"})
    async for c in open_app(keyed):
        r = await c.get(
            "/v1/tasks",
            headers={"Host": "jobhook.example.com", "Authorization": "Bearer alice-key-123"},
        )
        assert r.status_code == 200, r.text


# ---- CSRF: cross-site state-changing requests ---------------------------------------------------


async def test_a_cross_site_form_cannot_cancel_a_task(client: httpx.AsyncClient) -> None:
    task = await submit(client, NEVER)
    # what <form method=post action=http://127.0.0.1:8000/v1/tasks/.../cancel> on
    # attacker.example sends
    r = await client.post(
        f"/v1/tasks/{task['id']}/cancel",
        content=b"",
        headers={**FORM, "Origin": ATTACKER, "Sec-Fetch-Site": "cross-site"},
    )
    assert_problem(r, 403)
    assert await status_of(client, task["id"]) != "CANCEL"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": ATTACKER},
        {"Origin": "null"},  # a sandboxed iframe, a data: URL, a redirect across sites
        {"Origin": "http://127.0.0.1.attacker.example"},
        {"Origin": "http://localhost.attacker.example:8000"},
        {"Origin": "file://"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_cross_site_requests_change_nothing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    task = await submit(client, NEVER)
    # a no-cors fetch: no body, no Content-Type, no preflight
    assert_problem(await client.post(f"/v1/tasks/{task['id']}/cancel", headers=headers), 403)
    # text/plain: what a form with enctype=text/plain sends
    r = await client.post(
        "/v1/tasks",
        content=b'{"action": "imagine"}',
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert_problem(r, 403)
    r = await client.delete("/v1/endpoints/ep_01ANYTHING", headers=headers)
    assert_problem(r, 403)
    assert await status_of(client, task["id"]) != "CANCEL"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain;charset=UTF-8",
        "TEXT/PLAIN",
    ],
)
async def test_the_api_takes_no_form_bodies(client: httpx.AsyncClient, content_type: str) -> None:
    """Even without Origin (an old browser): a form can send these without a preflight."""
    task = await submit(client, NEVER)
    r = await client.post(
        f"/v1/tasks/{task['id']}/cancel", content=b"x=1", headers={"Content-Type": content_type}
    )
    assert_problem(r, 415)
    r = await client.post(
        f"/v1/tasks/{task['id']}/cancel",
        content=b"x=1",
        headers={"Content-Type": content_type, "Origin": "http://127.0.0.1:8000"},
    )
    assert_problem(r, 415)
    assert await status_of(client, task["id"]) != "CANCEL"


async def test_local_clients_still_change_things(client: httpx.AsyncClient) -> None:
    """curl, the CLI (no Origin) and pages served from jobhook itself (a loopback Origin)."""
    task = await submit(client, NEVER, headers={"Origin": "http://127.0.0.1:8000"})
    r = await client.post(
        f"/v1/tasks/{task['id']}/cancel",
        headers={"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200, r.text
    task = await submit(client, NEVER, headers={"Sec-Fetch-Site": "none"})
    r = await client.post(f"/v1/tasks/{task['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "CANCEL"
    r = await client.post(
        "/v1/tasks", json=NEVER, headers={"Origin": "http://[::1]:8000", "Host": "[::1]:8000"}
    )
    assert r.status_code == 202, r.text


async def test_provider_callbacks_and_the_simulator_are_not_browsers(
    client: httpx.AsyncClient,
) -> None:
    """Exempt from the Origin and Content-Type checks: a provider posts what it posts."""
    headers = {"Origin": ATTACKER, "Content-Type": "text/plain"}
    r = await client.post("/v1/callbacks/simulator/forged-token", content=b"{}", headers=headers)
    assert_problem(r, 401)  # turned away by the token check, not by the guard
    r = await client.post("/_sim/_faults", json={}, headers={"Origin": ATTACKER})
    assert r.status_code not in (403, 415), r.text


# ---- the pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authority", "name"),
    [
        ("LocalHost:8000", "localhost"),
        ("[::1]:80", "::1"),
        ("[::1]", "::1"),
        ("example.com.", "example.com"),
        ("a:b", None),
        ("[::1", None),
        ("[::1]x", None),
        ("", None),
        (":8000", None),
    ],
)
def test_host_name(authority: str, name: str | None) -> None:
    assert host_name(authority) == name


@pytest.mark.parametrize(
    ("name", "loopback"),
    [
        ("localhost", True),
        ("x.localhost", True),
        ("127.255.0.1", True),
        ("::1", True),
        ("localhostx", False),
        ("::ffff:127.0.0.1", False),
        ("2130706433", False),
        ("0177.0.0.1", False),
    ],
)
def test_loopback_names(name: str, loopback: bool) -> None:
    assert is_loopback_name(name) is loopback


def test_the_throttle_counts_per_address_and_forgets() -> None:
    now = [1000.0]
    throttle = AuthThrottle(limit=3, window=60, max_addresses=2, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after("203.0.113.9") == 0
        throttle.failed("203.0.113.9")
    assert throttle.retry_after("203.0.113.9") == 60
    assert throttle.retry_after("203.0.113.10") == 0
    # IPv6 clients are counted per /64
    for suffix in ("1", "2", "3"):
        throttle.failed(f"2001:db8::{suffix}")
    assert throttle.retry_after("2001:db8::ffff") == 60
    assert throttle.retry_after("203.0.113.9") == 60
    now[0] += 59.5
    assert throttle.retry_after("203.0.113.9") == pytest.approx(0.5)
    now[0] += 0.5
    assert throttle.retry_after("203.0.113.9") == 0
    # memory is bounded: a third address pushes out the least recently failing
    throttle.failed("198.51.100.1")
    throttle.failed("198.51.100.2")
    assert throttle.tracked == 2


# ---- wrong API keys -----------------------------------------------------------------------------


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_app(replace(settings, api_keys={"alice-key-123": "alice"})):
        yield c


async def test_wrong_keys_are_logged_and_throttled(keyed: httpx.AsyncClient) -> None:
    now = [1000.0]
    app_of(keyed).state.auth_throttle = AuthThrottle(clock=lambda: now[0])
    alice = {"Authorization": "Bearer alice-key-123"}
    with capture_logs() as logs:
        for n in range(10):
            r = await keyed.get("/v1/tasks", headers={"Authorization": f"Bearer guess-{n:04d}"})
            assert_problem(r, 401)
        # the eleventh guess is turned away, and the ones after it ...
        r = await keyed.get("/v1/tasks", headers={"Authorization": "Bearer guess-0010"})
        body = assert_problem(r, 429)
        assert r.headers["retry-after"] == "60" and body["retry_after"] == 60
        bad = {"Authorization": "Bearer guess-0011"}
        assert_problem(await keyed.post("/v1/tasks", json=NEVER, headers=bad), 429)
        # ... but the right key always passes: a tenant sharing the address is never locked out
        assert (await keyed.get("/v1/tasks", headers=alice)).status_code == 200
    failed = [e for e in logs if e["event"] == "auth.failed"]
    assert len(failed) == 10
    assert failed[0]["client"] == "127.0.0.1" and failed[0]["reason"] == "bad_key"
    assert failed[0]["route"] == "/v1/tasks" and failed[0]["log_level"] == "warning"
    assert "guess-0" not in repr(logs)
    # no credentials at all is not a failed guess: neither logged nor counted
    other = httpx.ASGITransport(app=app_of(keyed), client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=other, base_url="http://jobhook.test") as outside:
        with capture_logs() as quiet:
            for _ in range(12):
                assert_problem(await outside.get("/v1/tasks"), 401)
        assert not [e for e in quiet if e["event"] == "auth.failed"]
        # another address is not throttled by the first one's failures
        assert (await outside.get("/v1/tasks", headers=alice)).status_code == 200
    guess = {"Authorization": "Bearer guess-0012"}
    now[0] += 59
    assert_problem(await keyed.get("/v1/tasks", headers=guess), 429)
    now[0] += 1
    assert_problem(await keyed.get("/v1/tasks", headers=guess), 401)
