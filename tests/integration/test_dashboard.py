"""The dashboard in-process: pages and their security headers, the login that turns an API key
into a read-only session cookie, and the static assets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from structlog.testing import capture_logs

from service.config import Settings
from service.security.tokens import SessionCookies
from service.web.limits import AuthThrottle
from service.web.requests import SESSION_COOKIE
from tests.conftest import open_app

KEY = "alice-key-123"
FOX = {"action": "imagine", "params": {"prompt": "a red fox in snow"}}


@pytest.fixture
async def keyed(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_app(replace(settings, api_keys={KEY: "alice", "bob-key-4567": "bob"})):
        yield c


def assert_hardened(r: httpx.Response) -> None:
    csp = r.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "img-src 'self' http: https: data:",
        "style-src 'self'",
        "script-src 'self'",
        "connect-src 'self'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/login", data={"api_key": key})


@pytest.mark.parametrize(
    "path",
    ["/", "/tasks/task_01X", "/overview", "/deliveries", "/deliveries/msg_01X", "/endpoints"],
)
async def test_pages_in_development_mode(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert_hardened(r)
    assert '<script src="/static/dashboard.js" defer></script>' in r.text
    assert "<!--logout-->" not in r.text and "development mode" in r.text
    # no login in development mode
    assert (await client.get("/login")).headers["location"] == "/"


async def test_pages_need_a_session_when_there_are_keys(keyed: httpx.AsyncClient) -> None:
    for path in ("/", "/tasks/task_01ANYTHING", "/deliveries", "/deliveries/x", "/endpoints"):
        r = await keyed.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    r = await keyed.get("/login")
    assert r.status_code == 200 and 'name="api_key"' in r.text
    assert_hardened(r)


async def test_a_wrong_key_is_refused(keyed: httpx.AsyncClient) -> None:
    r = await sign_in(keyed, "not-a-key")
    assert r.status_code == 401
    assert "That API key is not valid." in r.text and 'name="api_key"' in r.text
    assert_hardened(r)
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert (await keyed.get("/")).status_code == 303


async def test_the_session_reads_but_never_writes(keyed: httpx.AsyncClient) -> None:
    alice = {"Authorization": f"Bearer {KEY}"}
    r = await keyed.post("/v1/tasks", json=FOX, headers=alice)
    assert r.status_code == 202, r.text
    task_id = r.json()["id"]
    assert (await keyed.get("/v1/tasks")).status_code == 401

    r = await sign_in(keyed, KEY)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("httponly", "samesite=strict", "path=/"):
        assert attribute in cookie
    assert "secure" not in cookie  # the request was plain http

    page = await keyed.get("/")
    assert page.status_code == 200 and "Sign out" in page.text
    tasks = await keyed.get("/v1/tasks")
    assert tasks.status_code == 200 and [t["id"] for t in tasks.json()["data"]] == [task_id]
    assert (await keyed.get(f"/v1/tasks/{task_id}/events")).status_code == 200
    assert (await keyed.get(f"/v1/deliveries?task_id={task_id}")).status_code == 200
    # the cookie alone never changes anything: a forged cross-site form gets nowhere
    assert (await keyed.post("/v1/tasks", json=FOX)).status_code == 401
    assert (await keyed.post(f"/v1/tasks/{task_id}/cancel")).status_code == 401

    r = await keyed.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"]
    assert (await keyed.get("/v1/tasks")).status_code == 401
    assert (await keyed.get("/")).status_code == 303


async def test_sessions_are_per_owner(keyed: httpx.AsyncClient) -> None:
    r = await keyed.post("/v1/tasks", json=FOX, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 202
    assert (await sign_in(keyed, "bob-key-4567")).status_code == 303
    assert (await keyed.get("/v1/tasks")).json()["data"] == []


async def test_a_forged_or_foreign_cookie_is_refused(keyed: httpx.AsyncClient) -> None:
    keyed.cookies.set(SESSION_COOKIE, "alice.forged.signature")
    assert (await keyed.get("/")).status_code == 303
    assert (await keyed.get("/v1/tasks")).status_code == 401


async def test_login_over_https_sets_a_secure_cookie(keyed: httpx.AsyncClient) -> None:
    r = await keyed.post("https://jobhook.test/login", data={"api_key": KEY})
    assert r.status_code == 303
    assert "secure" in r.headers["set-cookie"].lower()


async def test_login_refuses_forms_posted_by_other_sites(keyed: httpx.AsyncClient) -> None:
    r = await keyed.post(
        "/login", data={"api_key": KEY}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    r = await keyed.post("/login", data={"api_key": KEY}, headers={"Origin": "http://jobhook.test"})
    assert r.status_code == 303


async def test_login_wants_a_form(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.post("/login", json={"api_key": KEY})).status_code == 400


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        # Python 3.11's own table says application/javascript; /etc/mime.types text/javascript
        ("/static/dashboard.js", ("text/javascript", "application/javascript")),
        ("/static/console.js", ("text/javascript", "application/javascript")),
        ("/static/dashboard.css", ("text/css",)),
        ("/static/index.html", ("text/html",)),
    ],
)
async def test_static_assets(
    client: httpx.AsyncClient, path: str, content_type: tuple[str, ...]
) -> None:
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in content_type
    assert r.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/static/missing.js")).status_code == 404


async def test_the_script_never_parses_data_as_html(client: httpx.AsyncClient) -> None:
    for name in ("dashboard.js", "console.js"):
        script = (await client.get(f"/static/{name}")).text
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script, (name, sink)


async def test_signing_out_ends_the_session_everywhere(keyed: httpx.AsyncClient) -> None:
    """A copy of the cookie (another tab, a stolen one) stops working at sign-out too."""
    r = await sign_in(keyed, KEY)
    assert r.status_code == 303
    session = keyed.cookies[SESSION_COOKIE]
    assert (await keyed.get("/v1/tasks")).status_code == 200
    assert (await keyed.post("/logout")).status_code == 303
    keyed.cookies.set(SESSION_COOKIE, session)  # the browser, or whoever copied it, keeps it
    assert (await keyed.get("/v1/tasks")).status_code == 401
    assert (await keyed.get("/")).status_code == 303
    assert (await keyed.get("/login")).status_code == 200
    # signing in again starts a new session
    keyed.cookies.clear()
    assert (await sign_in(keyed, KEY)).status_code == 303
    assert keyed.cookies[SESSION_COOKIE] != session
    assert (await keyed.get("/v1/tasks")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "http://attacker.example"},
        {"Origin": "http://jobhook.test.attacker.example"},
        {"Origin": "http://[::1"},
        {"Origin": "jobhook.test"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_login_refuses_null_and_foreign_origins(
    keyed: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await keyed.post("/login", data={"api_key": KEY}, headers=headers)
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


async def test_failed_logins_are_logged_and_throttled(keyed: httpx.AsyncClient) -> None:
    now = [1000.0]
    keyed.app.state.auth_throttle = AuthThrottle(clock=lambda: now[0])  # type: ignore[attr-defined]
    with capture_logs() as logs:
        for n in range(10):
            r = await sign_in(keyed, f"guess-{n:04d}")
            assert r.status_code == 401
    failed = [e for e in logs if e["event"] == "auth.failed"]
    assert [e["reason"] for e in failed] == ["bad_login"] * 10
    assert failed[0]["client"] == "127.0.0.1" and failed[0]["route"] == "/login"
    assert "guess-0" not in repr(logs)
    # now a wrong key waits: the page says so, with Retry-After (the right key never does)
    r = await sign_in(keyed, "guess-0010")
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert 'role="alert"' in r.text and "try again in 60 s" in r.text
    assert "set-cookie" not in r.headers
    assert_hardened(r)
    assert (await keyed.get("/login")).status_code == 200  # the form still shows
    assert (await sign_in(keyed, KEY)).status_code == 303
    now[0] += 60
    assert (await sign_in(keyed, "guess-0011")).status_code == 401


def test_signed_out_sessions_are_remembered_until_they_expire_and_no_longer() -> None:
    now = [1_000_000.0]
    sessions = SessionCookies(["k" * 32], max_age=3600, max_revoked=3, clock=lambda: now[0])
    cookies = [sessions.issue("alice") for _ in range(4)]
    assert {sessions.verify(c) for c in cookies} == {"alice"}
    assert not sessions.revoke("alice.forged.signature")
    for cookie in cookies[:3]:
        assert sessions.revoke(cookie)
    assert [sessions.verify(c) for c in cookies] == [None, None, None, "alice"]
    assert sessions.revoked == 3
    # full: a fourth sign-out makes room (here by dropping the oldest, as none has expired)
    assert sessions.revoke(cookies[3]) and sessions.revoked == 3
    assert sessions.verify(cookies[3]) is None
    # a cookie from before sessions had ids (a bare owner name) is refused
    legacy = URLSafeTimedSerializer(["k" * 32], salt="jobhook.session").dumps("alice")
    assert sessions.verify(str(legacy)) is None
