"""The dashboard in a real browser: `jobhook serve` and Debian's headless chromium, driven by
Playwright, watching a task's row fill up live and its page show the timeline."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from service.demo import mask_png
from tests.e2e.conftest import Process, _start, _stop, free_port
from tests.e2e.test_serve import wait_done

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: This machine's network is closed: without these, chromium hangs on background connections.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: (percent shown, share of the bar drawn) of a progress bar
BAR_STATE = """b => [
    Number(b.getAttribute('aria-valuenow')),
    b.firstChild.getBoundingClientRect().width / b.getBoundingClientRect().width,
]"""
#: at least four images, all loaded and decoded
FOUR_LOADED = "imgs => imgs.length >= 4 && imgs.every(i => i.complete && i.naturalWidth > 0)"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (scripts/test)"
)


@pytest.fixture
def jobhook(tmp_path: Path) -> Iterator[Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBHOOK_", "APIFRAME_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "JOBHOOK_DATABASE_URL": f"sqlite:///{tmp_path}/jobhook.sqlite3",
        "JOBHOOK_VAR_DIR": str(tmp_path / "var"),
        # slow enough that the progress bar visibly moves
        "JOBHOOK_SIMULATOR_STEP": "0.3",
        "JOBHOOK_LOG_FORMAT": "json",
        # the test's webhook receiver listens on loopback, which the SSRF guard refuses otherwise
        "JOBHOOK_OUTBOUND_ALLOW": "127.0.0.0/8",
    }
    process = _start(["serve"], env, tmp_path / "jobhook.log", free_port())
    try:
        yield process
    finally:
        _stop(process)


class _Accept(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """A backend that accepts every webhook: the task page lists its deliveries."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def eventually(check: Callable[[], object], what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def submit(jobhook: Process, body: dict[str, object]) -> str:
    r = httpx.post(jobhook.url + "/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    task_id: str = r.json()["id"]
    return task_id


def test_dashboard_follows_a_task_live(jobhook: Process, receiver: str, tmp_path: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 800},
        )
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            page.goto(jobhook.url + "/")
            page.wait_for_selector("#live[data-state=live]")

            task_id = submit(
                jobhook,
                {
                    "action": "imagine",
                    "params": {"prompt": "a lighthouse at dusk"},
                    "callback_url": receiver,
                },
            )
            row = f"tr[data-id='{task_id}']"
            page.wait_for_selector(row, timeout=10_000)  # arrives through the event stream
            assert "a lighthouse at dusk" in page.inner_text(row)

            # (percent shown, share of the bar drawn) as the progress events arrive
            seen: list[tuple[int, float]] = []

            def filled() -> bool:
                pct, share = page.eval_on_selector(f"{row} .bar", BAR_STATE)
                seen.append((pct, share))
                return pct == 100 and share > 0.99

            eventually(filled, "the progress bar to fill")
            assert any(0 < pct < 100 for pct, _ in seen), seen
            shares = [round(share, 3) for _, share in seen]
            assert shares == sorted(shares), seen  # it only ever grows
            assert len({s for s in shares if 0 < s < 1}) >= 3, seen  # ... and visibly, in steps

            page.wait_for_selector(f"{row}[data-status=SUCCESS]", timeout=30_000)
            assert page.inner_text(f"{row} .badge") == "SUCCESS"
            assert page.get_attribute(f"{row} .fill", "style") == "width: 100%;"
            eventually(
                lambda: page.eval_on_selector_all(f"{row} .thumbs img", FOUR_LOADED),
                "the thumbnails to load",
            )

            page.click(f"{row} a[href='/tasks/{task_id}']")
            page.wait_for_selector("#events tr[data-outcome=applied]")
            timeline = page.inner_text("#events")
            assert "submitted" in timeline and "succeeded" in timeline
            assert page.inner_text("#status") == "SUCCESS"
            page.wait_for_selector("#deliveries .d-delivered")
            assert "task.succeeded" in page.inner_text("#deliveries")
            eventually(
                lambda: page.eval_on_selector_all("#images img", FOUR_LOADED),
                "the task page's images to load",
            )

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-task.png"), full_page=True)

            # A few more tasks, so the list shows what each status looks like.
            page.goto(jobhook.url + "/")
            page.wait_for_selector("#live[data-state=live]")
            upscale = submit(
                jobhook, {"action": "upscale", "parent_id": task_id, "params": {"index": 2}}
            )
            failed = submit(jobhook, {"action": "imagine", "params": {"prompt": "a storm [fail]"}})
            markup = 'a map <img src=x onerror="alert(1)"> [never]'
            running = submit(jobhook, {"action": "imagine", "params": {"prompt": markup}})
            page.wait_for_selector(f"tr[data-id='{upscale}'][data-status=SUCCESS]")
            page.wait_for_selector(f"tr[data-id='{failed}'][data-status=FAILURE]")
            page.wait_for_selector(f"tr[data-id='{running}'][data-status=IN_PROGRESS]")
            # data is text, never markup
            assert page.inner_text(f"tr[data-id='{running}'] .prompt") == markup
            assert page.query_selector(f"tr[data-id='{running}'] .prompt img") is None
            page.wait_for_function("() => [...document.images].every(i => i.complete)")
            page.wait_for_timeout(2000)  # the new rows' highlight fades
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()

    assert (ARTIFACTS / "dashboard.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert problems == []


class _Switchable(BaseHTTPRequestHandler):
    """A backend whose answer the test sets: 410 Gone (the endpoint is gone: jobhook marks the
    delivery dead and disables the endpoint), then 200."""

    answer = 410

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b"gone for now" if self.answer == 410 else b'{"ok": true}'
        self.send_response(self.answer)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_console_deliveries_endpoints_and_a_cancel(jobhook: Process, tmp_path: Path) -> None:
    """Issue 15: create an endpoint and rotate its secret, a delivery goes dead, filter the
    list, open the delivery, enable the endpoint, retry it and see it delivered; cancel a task."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Switchable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_port}/hooks"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=str(CHROMIUM),
                headless=True,
                args=FLAGS,
                viewport={"width": 1400, "height": 800},
            )
            try:
                page = browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(str(exc)))
                page.on(
                    "console",
                    lambda msg: problems.append(msg.text) if msg.type == "error" else None,
                )
                page.on("dialog", lambda dialog: dialog.accept())

                # Endpoints: create one (its secret shown once), then rotate the secret.
                page.goto(jobhook.url + "/endpoints")
                page.fill("#create input[name=url]", hook)
                page.fill("#create input[name=description]", "orders backend")
                page.check("#create input[value='task.submitted']")
                page.click("#create button[type=submit]")
                page.wait_for_selector("#secret:not([hidden])")
                first = page.inner_text("#secret-value")
                assert first.startswith("whsec_")
                page.wait_for_selector("#rows tr[data-id^=ep_]")
                endpoint = page.get_attribute("#rows tr", "data-id")
                assert "orders backend" in page.inner_text("#rows")
                page.click("#secret-done")
                assert page.is_hidden("#secret")
                page.click(f"tr[data-id='{endpoint}'] button.rotate")
                page.wait_for_selector("#secret:not([hidden])")
                second = page.inner_text("#secret-value")
                assert second.startswith("whsec_") and second != first
                page.screenshot(path=str(ARTIFACTS / "console-endpoints.png"), full_page=True)
                page.click("#secret-done")

                # A task: the endpoint answers 410, so its task.submitted is dead and the
                # endpoint disabled.
                task_id = submit(jobhook, {"action": "imagine", "params": {"prompt": "a kite"}})
                page.goto(jobhook.url + "/deliveries")
                page.wait_for_selector("#live[data-state=live]")
                page.select_option("#filters select[name=status]", "dead")
                row = "#rows tr[data-status=dead]"
                page.wait_for_selector(row, timeout=20_000)
                assert "status=dead" in page.url
                assert page.eval_on_selector_all(
                    "#rows tr", "rows => rows.every(r => r.dataset.status === 'dead')"
                )
                assert "task.submitted" in page.inner_text(row) and "410" in page.inner_text(row)
                page.screenshot(path=str(ARTIFACTS / "console-deliveries.png"), full_page=True)

                # The endpoint shows why it was disabled; enable it once the backend is back.
                page.goto(jobhook.url + "/endpoints")
                page.wait_for_selector(f"tr[data-id='{endpoint}'][data-disabled=true]")
                assert "410" in page.inner_text(f"tr[data-id='{endpoint}']")
                _Switchable.answer = 200
                page.click(f"tr[data-id='{endpoint}'] button.enable")
                page.wait_for_selector(f"tr[data-id='{endpoint}'][data-disabled=false]")

                # Open the dead delivery: its attempt, its signed body; retry it.
                page.goto(jobhook.url + "/deliveries?status=dead")
                page.wait_for_selector(row)
                page.click(f"{row} a[href^='/deliveries/']")
                page.wait_for_selector("#delivery:not([hidden])")
                assert page.inner_text("#status") == "dead"
                attempts = page.inner_text("#attempts")
                assert "410" in attempts and "gone for now" in attempts
                assert '"type": "task.submitted"' in page.inner_text("#body")
                assert task_id in page.inner_text("#body")
                page.click("#retry")
                page.wait_for_selector("#status .d-delivered", timeout=20_000)
                page.wait_for_selector("#attempts tr:nth-child(2)")  # the new attempt on top
                assert "200" in page.inner_text("#attempts tr:first-child")
                page.screenshot(path=str(ARTIFACTS / "console-delivery.png"), full_page=True)

                # The endpoint's success rate: one of two attempts answered 2xx.
                page.goto(jobhook.url + "/endpoints")
                page.wait_for_selector(f"tr[data-id='{endpoint}'] .rate")
                assert "50.0%" in page.inner_text(f"tr[data-id='{endpoint}'] .rate")

                # Cancel a task that would never finish, from its page.
                stuck = submit(jobhook, {"action": "imagine", "params": {"prompt": "x [never]"}})
                page.goto(f"{jobhook.url}/tasks/{stuck}")
                page.wait_for_selector("#cancel:not([hidden])")
                page.keyboard.press("Tab")  # the page is usable from the keyboard
                page.click("#cancel")
                page.wait_for_selector("#status .s-CANCEL", timeout=20_000)
                assert page.is_hidden("#cancel")
                page.screenshot(path=str(ARTIFACTS / "console-task-cancelled.png"), full_page=True)

                # The overview: tiles and charts from /metrics, read every 5 s.
                page.goto(jobhook.url + "/overview")
                page.wait_for_selector("#c-status .bar-row")
                assert "CANCEL" in page.inner_text("#c-status")
                assert "simulator" in page.inner_text("#c-provider")
                assert page.inner_text("#t-dead") != "—"
                page.wait_for_selector(
                    "#c-deliveries polyline", state="attached", timeout=15_000
                )  # two samples
                page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

                # Dark mode follows the system.
                page.emulate_media(color_scheme="dark")
                page.goto(jobhook.url + "/deliveries")
                page.wait_for_selector("#rows tr")
                background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == "rgb(15, 17, 21)", background
                page.screenshot(path=str(ARTIFACTS / "console-dark.png"), full_page=True)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        _Switchable.answer = 410
    assert problems == []


def test_follow_ups_and_the_modal_call_from_the_task_page(jobhook: Process, tmp_path: Path) -> None:
    """Issue 15: U1 on a finished grid submits the upscale; a MODAL inpaint takes its prompt
    and mask from the page's dialog and finishes."""
    with httpx.Client(base_url=jobhook.url, timeout=30) as client:
        grid = submit(
            jobhook,
            {"provider": "simulator-apimart", "action": "imagine", "params": {"prompt": "a room"}},
        )
        assert wait_done(client, grid)["status"] == "SUCCESS"
    mask = tmp_path / "mask.png"
    mask.write_bytes(mask_png())
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"{jobhook.url}/tasks/{grid}")
            page.wait_for_selector("button.follow-up[data-action=upscale][data-index='1']")
            page.click("button.follow-up[data-action=upscale][data-index='1']")
            page.wait_for_url(lambda url: "/tasks/" in url and grid not in url)
            upscale = page.url.rsplit("/", 1)[1]
            page.wait_for_selector("#status .s-SUCCESS", timeout=30_000)
            assert "upscale" in page.inner_text("#fields")

            inpaint = submit(jobhook, {"action": "inpaint", "parent_id": upscale, "params": {}})
            page.goto(f"{jobhook.url}/tasks/{inpaint}")
            page.wait_for_selector("#modal-open", timeout=30_000)  # the task reached MODAL
            page.click("#modal-open")
            page.fill("#modal-form input[name=prompt]", "a red sofa")
            page.set_input_files("#modal-form input[name=mask]", str(mask))
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "console-modal.png"))
            page.click("#modal-form button[type=submit]")
            page.wait_for_selector("#status .s-SUCCESS", timeout=30_000)
            assert not page.is_visible("#modal-dialog")
        finally:
            browser.close()
    assert problems == []
