"""`jobhook listen`: a local webhook receiver for trying jobhook out, as Stripe's and Svix's CLIs
have. It registers itself as an endpoint of a running jobhook (dev mode lets loopback through),
verifies each delivery's Standard Webhooks signature and prints one line per delivery.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

import orjson

from service.cli_api import EXIT_OK, ApiError, open_api

#: A receiver refuses signatures older or newer than this (the Standard Webhooks tolerance).
TOLERANCE_SECONDS = 300
#: The largest delivery body read.
MAX_BODY = 1024 * 1024
_COLOURS = {
    "task.succeeded": "32",
    "task.failed": "31",
    "task.cancelled": "33",
    "task.modal": "35",
    "task.progress": "36",
    "task.submitted": "34",
}


def verify(secrets: list[str], headers: Any, body: bytes, now: float | None = None) -> str | None:
    """None when one of `secrets` signed this delivery, recently; else what is wrong."""
    msg_id = headers.get("webhook-id") or ""
    stamp = headers.get("webhook-timestamp") or ""
    signatures = (headers.get("webhook-signature") or "").split()
    if not msg_id or not stamp.isascii() or not stamp.isdigit() or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if abs((now or time.time()) - int(stamp)) > TOLERANCE_SECONDS:
        return "the timestamp is more than 5 minutes off"
    signed = f"{msg_id}.{stamp}.".encode() + body
    for secret in secrets:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            continue
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for given in signatures:
            version, _, value = given.partition(",")
            if version == "v1" and hmac.compare_digest(value, expected):
                return None
    return "no signature matches the endpoint's secret"


def describe(body: bytes, headers: Any, problem: str | None, *, colour: bool) -> str:
    """One line: time, event type, task, status and progress, verified or why not, webhook-id."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = {}
    data = payload.get("data") if isinstance(payload, dict) else None
    task = data if isinstance(data, dict) else {}
    kind = str(payload.get("type", "?")) if isinstance(payload, dict) else "?"
    state = f"{task.get('status', '?')} {task.get('progress', '?')}%"
    verdict = "verified" if problem is None else f"NOT VERIFIED: {problem}"
    if colour:
        kind_text = f"\x1b[{_COLOURS.get(kind, '0')}m{kind:<15}\x1b[0m"
        verdict = f"\x1b[{'32' if problem is None else '1;31'}m{verdict}\x1b[0m"
    else:
        kind_text = f"{kind:<15}"
    clock = time.strftime("%H:%M:%S")
    msg_id = headers.get("webhook-id") or "-"
    return f"{clock}  {kind_text} {task.get('id', '?')}  {state:<16} {verdict}  {msg_id}"


def serve(
    port: int,
    secrets: list[str],
    out: IO[str],
    *,
    colour: bool,
    show_body: bool = False,
    on_delivery: Callable[[], None] | None = None,
) -> ThreadingHTTPServer:
    """A receiver on 127.0.0.1:`port` (0: any free port), answering each delivery 204."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = self.headers.get("content-length") or ""
            if not length.isascii() or not length.isdigit() or int(length) > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(int(length))
            problem = verify(secrets, self.headers, body)
            out.write(describe(body, self.headers, problem, colour=colour) + "\n")
            if show_body:
                out.write(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode())
                out.write("\n")
            out.flush()
            self.send_response(204 if problem is None else 400)
            self.end_headers()
            if on_delivery is not None:
                on_delivery()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per delivery is ours to print

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # SIGTERM stops it like Ctrl-C does: the endpoint is removed on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    secrets = list(args.secret or [])
    colour = sys.stdout.isatty()
    try:
        server = serve(args.port, secrets, sys.stdout, colour=colour, show_body=args.body)
    except OSError as exc:
        raise ApiError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from None
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, name="jobhook-listen", daemon=True)
    thread.start()
    with open_api(args) as api:
        endpoint = None
        try:
            if args.register:
                body: dict[str, Any] = {"url": url, "description": "jobhook listen"}
                if args.events:
                    body["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
                try:
                    endpoint = api.request("POST", "/v1/endpoints", json=body)
                except ApiError as exc:
                    raise ApiError(
                        f"could not register {url} with jobhook at {api.base_url}: {exc} "
                        "(loopback endpoints are open in dev mode, with no JOBHOOK_API_KEYS; "
                        "else set JOBHOOK_OUTBOUND_ALLOW=127.0.0.1/32 on the server)"
                    ) from None
                secrets.append(endpoint["secret"])
                print(
                    f"jobhook listen: {url} is endpoint {endpoint['id']} of {api.base_url}; "
                    f"signing secret {endpoint['secret']}. Ctrl-C to stop (it is removed).",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                print(f"jobhook listen: receiving on {url}", file=sys.stderr, flush=True)
            thread.join()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
            if endpoint is not None:
                try:
                    api.request("DELETE", f"/v1/endpoints/{endpoint['id']}")
                except ApiError as exc:
                    print(
                        f"jobhook listen: could not remove {endpoint['id']}: {exc}", file=sys.stderr
                    )
    return EXIT_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    listen = sub.add_parser(
        "listen",
        parents=[common],
        help="receive jobhook's webhooks locally and print them, verified",
        description=(
            "Run a webhook receiver on 127.0.0.1 and register it as an endpoint of the jobhook "
            "at --url (JOBHOOK_URL): every delivery is printed on one line (event type, task, "
            "status, whether its Standard Webhooks signature verified). Ctrl-C stops it and "
            "removes the endpoint. A jobhook in dev mode (no JOBHOOK_API_KEYS) delivers to "
            "loopback; with keys, set JOBHOOK_API_KEY here and JOBHOOK_OUTBOUND_ALLOW there."
        ),
        epilog="examples:\n  jobhook listen\n  jobhook listen --port 9911 --events "
        "task.succeeded,task.failed --body\n",
    )
    listen.add_argument("--port", type=int, default=0, help="port to receive on (default: any)")
    listen.add_argument("--events", metavar="E,E", help="event types (default: all of them)")
    listen.add_argument("--body", action="store_true", help="print each delivery's JSON body")
    listen.add_argument(
        "--no-register",
        dest="register",
        action="store_false",
        help="only receive (register the URL yourself; pass its --secret to verify)",
    )
    listen.add_argument(
        "--secret", action="append", metavar="WHSEC", help="a secret to verify with; repeat"
    )
    listen.set_defaults(run=run, client=True)
