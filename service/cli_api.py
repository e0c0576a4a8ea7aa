"""The API client commands (`submit`, `status`, `tasks`, `modal`): one httpx.Client against a
running jobhook, problem+json answers turned into one line, and a progress bar for `--wait`.
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import httpx
import orjson

from service.domain.numbers import whole_number
from service.domain.status import TERMINAL, Status

DEFAULT_URL = "http://127.0.0.1:8000"
#: seconds each long-poll asks the server to hold `GET /v1/tasks/{id}?wait=`
WAIT_SECONDS = 30
#: how long a --wait keeps retrying while jobhook cannot be reached (a restart, say)
RECONNECT_SECONDS = 60.0
#: what ends a wait: a terminal status, or MODAL (the client's turn)
ENDS = frozenset({*TERMINAL, Status.MODAL})
BAR_WIDTH = 24
#: a plain (non-terminal) progress line is repeated this often even when nothing changed
HEARTBEAT_SECONDS = 30.0

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class ApiError(Exception):
    """A request failed; the message is the one line to show, `code` the exit code, and
    `transient` says a later retry may succeed (no connection, a timeout, a 5xx)."""

    def __init__(self, message: str, code: int = EXIT_USAGE, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


def parse_param(text: str) -> tuple[str, Any]:
    """`key=value`; the value is JSON when it parses as JSON (`2`, `true`, `["a"]`), else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw
    return key, value


def problem_line(response: httpx.Response) -> str:
    """The one line that says what a non-2xx answer means: `detail`, plus the fields in error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "detail" not in body:
        text = " ".join(response.text.split())[:200]
        return f"HTTP {response.status_code} from {response.request.url}" + (
            f": {text}" if text else ""
        )
    detail = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    errors = body.get("errors")
    fields = (
        [str(e["field"]) for e in errors if isinstance(e, dict) and e.get("field")]
        if isinstance(errors, list)
        else []
    )
    missing = [f for f in fields if f not in detail]
    if missing:
        detail += f" (fields: {', '.join(missing)})"
    if response.status_code == 401 and not os.environ.get("JOBHOOK_API_KEY"):
        detail += "; set JOBHOOK_API_KEY"
    return detail


class Api:
    """The jobhook HTTP API over one httpx.Client; every failure is an ApiError."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "jobhook-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(15.0, read=WAIT_SECONDS + 15.0),
            transport=transport,
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(
                f"cannot connect to jobhook at {self.base_url}: is it running? "
                "start it with ./scripts/serve (or point --url / JOBHOOK_URL at it)",
                transient=True,
            ) from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            message = f"{method} {path} at {self.base_url} failed: {reason}"
            raise ApiError(message, transient=True) from None
        if response.status_code >= 400:
            # 4xx: the request was wrong (usage); 5xx: jobhook or the provider failed.
            failed = response.status_code >= 500
            raise ApiError(
                problem_line(response), EXIT_FAILED if failed else EXIT_USAGE, transient=failed
            )
        return response.json() if response.content else None

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        task: dict[str, Any] = self.request("POST", "/v1/tasks", json=body)
        return task

    def get(self, ref: str, *, wait: float | None = None) -> dict[str, Any]:
        params = {"wait": wait} if wait else None
        task: dict[str, Any] = self.request("GET", f"/v1/tasks/{ref}", params=params)
        return task

    def list(self, **params: Any) -> dict[str, Any]:
        query = {k: v for k, v in params.items() if v is not None}
        page: dict[str, Any] = self.request("GET", "/v1/tasks", params=query)
        return page

    def modal(self, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        task: dict[str, Any] = self.request("POST", f"/v1/tasks/{ref}/modal", json=body)
        return task

    def wait(
        self, task: dict[str, Any], on_change: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Long-poll until the task ends or reaches MODAL; `on_change` sees every answer.

        A lost connection or a 5xx is retried for RECONNECT_SECONDS: the task goes on meanwhile.
        """
        on_change(task)
        failing_since: float | None = None
        while task["status"] not in ENDS:
            try:
                task = self.get(task["id"], wait=WAIT_SECONDS)
            except ApiError as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if not exc.transient or now - failing_since > RECONNECT_SECONDS:
                    raise
                time.sleep(2.0)
                continue
            failing_since = None
            on_change(task)
        return task


@contextmanager
def open_api(args: argparse.Namespace) -> Iterator[Api]:
    url = args.url or os.environ.get("JOBHOOK_URL") or DEFAULT_URL
    api = Api(url, api_key=os.environ.get("JOBHOOK_API_KEY") or None)
    try:
        yield api
    finally:
        api.close()


class Progress:
    """`--wait`'s display on stderr: one bar redrawn in place on a terminal, else plain lines
    on each change (and every HEARTBEAT_SECONDS while nothing changes)."""

    def __init__(self, stream: IO[str], *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.last: tuple[str, int] | None = None
        self.last_line_at = 0.0

    def __call__(self, task: dict[str, Any]) -> None:
        state = (str(task["status"]), int(task.get("progress") or 0))
        elapsed = time.monotonic() - self.started
        if self.tty:
            done = BAR_WIDTH * state[1] // 100
            bar = "#" * done + "-" * (BAR_WIDTH - done)
            line = f"[{bar}] {state[1]:3d}% {state[0]:<11} {elapsed:5.1f}s"
            # a line wider than the terminal would wrap, and \r could no longer redraw it
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r" + line[:width] + "\x1b[K")
        elif state != self.last or elapsed - self.last_line_at >= HEARTBEAT_SECONDS:
            self.stream.write(f"{task['id']} {state[0]} {state[1]}% ({elapsed:.1f}s)\n")
            self.last_line_at = elapsed
        self.last = state
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last is not None:
            self.stream.write("\n")
            self.stream.flush()


def result_lines(task: dict[str, Any]) -> list[str]:
    """The status line, then one line per result URL (grid, images, videos) or describe's
    prompt, when the URLs expire, or the error."""
    head = f"{task['status']} {task['id']} ({task['action']} on {task['provider']}"
    lines = [head + f", {task.get('progress') or 0}%)"]
    result = task.get("result") or {}
    if result.get("grid_url"):
        lines.append(f"  grid     {result['grid_url']}")
    for kind in ("images", "videos"):
        for n, url in enumerate(result.get(kind) or (), 1):
            lines.append(f"  {kind[:-1]} {n:<2} {url}")
    for n, prompt in enumerate(result.get("prompts") or (), 1):
        lines.append(f"  prompt {n:<2}{prompt}")
    if result.get("expires_at"):
        lines.append(f"  expires  {result['expires_at']} (the provider's URLs stop working)")
    error = task.get("error")
    if error:
        code = error.get("provider_code") or error.get("code")
        lines.append(f"  error    {code}: {error.get('message')}")
    if task["status"] == Status.MODAL:
        lines.append(
            f"  next     send the mask: jobhook modal {task['id']} --prompt TEXT "
            f"--mask-file MASK.png  (POST /v1/tasks/{task['id']}/modal)"
        )
    return lines


def exit_code(task: dict[str, Any]) -> int:
    return EXIT_FAILED if task["status"] in (Status.FAILURE, Status.CANCEL) else EXIT_OK


def _show(api: Api, task: dict[str, Any], args: argparse.Namespace, *, print_id: bool) -> int:
    """Print the task (after waiting for it with --wait); the exit code follows its status."""
    if args.wait:
        if print_id and not args.json:
            print(task["id"], flush=True)
        progress = Progress(sys.stderr)
        try:
            task = api.wait(task, progress)
        except KeyboardInterrupt:
            progress.close()
            print(
                f"jobhook: stopped waiting; {task['id']} goes on "
                f"(jobhook status {task['id']} --wait)",
                file=sys.stderr,
            )
            return 130
        progress.close()
    if args.json:
        print(orjson.dumps(task, option=orjson.OPT_INDENT_2).decode())
    elif args.wait or not print_id:
        print("\n".join(result_lines(task)))
    else:
        print(task["id"])
    # `status` says how the task ended whether it waited or not; `submit` without --wait
    # only says the task was accepted.
    return exit_code(task) if args.wait or not print_id else EXIT_OK


def run_submit(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"action": args.action, "params": dict(args.param or ())}
    for name in ("provider", "parent_id", "callback_url"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    with open_api(args) as api:
        return _show(api, api.submit(body), args, print_id=True)


def run_status(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        return _show(api, api.get(args.id), args, print_id=False)


def run_modal(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.prompt is not None:
        body["prompt"] = args.prompt
    if args.mask_url:
        body["mask_url"] = args.mask_url
    if args.mask_file:
        try:
            with open(args.mask_file, "rb") as handle:
                body["mask"] = base64.b64encode(handle.read()).decode()
        except OSError as exc:
            raise ApiError(f"cannot read {args.mask_file}: {exc.strerror}") from None
    if args.sample_mask:
        from service.demo import mask_png

        body["mask"] = base64.b64encode(mask_png()).decode()
    with open_api(args) as api:
        return _show(api, api.modal(args.id, body), args, print_id=False)


COLUMNS = ("id", "provider", "action", "status", "progress", "created")
#: columns that give up width, in this order, when the table is wider than the terminal
_SHRINK = ("created", "progress", "action", "provider")
_MIN_WIDTH = {"created": 8, "progress": 4, "action": 7, "provider": 8}


def table(tasks: list[dict[str, Any]], width: int | None = None) -> list[str]:
    """The task list as aligned rows; with `width`, long cells are cut to fit it."""
    rows = [
        {
            "id": t["id"],
            "provider": t["provider"],
            "action": t["action"],
            "status": t["status"],
            "progress": f"{t.get('progress') or 0}%",
            "created": str(t.get("created_at") or "")[5:19].replace("T", " "),
        }
        for t in tasks
    ]
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in COLUMNS}
    if width is not None:
        excess = sum(widths.values()) + 2 * (len(COLUMNS) - 1) - width
        for column in _SHRINK:
            if excess <= 0:
                break
            cut = min(excess, max(0, widths[column] - _MIN_WIDTH[column]))
            widths[column] -= cut
            excess -= cut

    def cell(column: str, text: str, *, header: bool = False) -> str:
        w = widths[column]
        if len(text) > w and not header:  # a date-time keeps its time, a name its start
            text = text[-w:] if column == "created" else text[: w - 1] + "~"
        text = text[:w]
        return text.rjust(w) if column == "progress" else text.ljust(w)

    lines = ["  ".join(cell(c, c.upper(), header=True) for c in COLUMNS).rstrip()]
    lines += ["  ".join(cell(c, r[c]) for c in COLUMNS).rstrip() for r in rows]
    return lines


def run_tasks(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        page = api.list(
            status=args.status,
            provider=args.provider,
            action=args.action,
            limit=args.limit,
            cursor=args.cursor,
        )
    if args.json:
        print(orjson.dumps(page, option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    print("\n".join(table(page["data"], width)))
    if page.get("next_cursor"):
        again = ["jobhook tasks"] + [
            f"--{name} {shlex.quote(str(value))}"
            for name, value in (
                ("status", args.status),
                ("provider", args.provider),
                ("action", args.action),
                ("limit", args.limit if args.limit != 20 else None),
            )
            if value is not None
        ]
        print(f"more: {' '.join(again)} --cursor {page['next_cursor']}", file=sys.stderr)
    return EXIT_OK


def _limit(value: str) -> int:
    number = whole_number(value)
    if number is None or not 1 <= number <= 200:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 200, got {value!r}")
    return number


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register submit, status, tasks and modal; `common` carries --url."""
    wait_help = "follow the task to its end (or MODAL) with a progress bar on stderr"
    submit = sub.add_parser(
        "submit",
        parents=[common],
        help="submit a task (imagine, upscale, inpaint, video, ...)",
        description=(
            "Submit a task to jobhook and print its id. Each --param key=value becomes one of "
            "the task's params; a value that parses as JSON is JSON (index=2 is the number 2, "
            "image_urls='[\"https://...\"]' a list), anything else is text; quote JSON to keep "
            "text: version='\"8.1\"'. The API key comes from JOBHOOK_API_KEY."
        ),
        epilog=(
            "exit codes: 0 accepted (with --wait: SUCCESS, or MODAL awaiting a mask), "
            "1 FAILURE or CANCEL, 2 a usage or connection error\n\n"
            "examples:\n"
            "  jobhook submit imagine --param prompt='a red fox in snow' --param aspect_ratio=16:9"
            " --wait\n"
            "  jobhook submit upscale --parent task_01J... --param index=2 --wait\n"
            "  jobhook submit imagine --provider simulator-apimart --param prompt='a product' \\\n"
            "      --param image_urls='[\"https://cdn.example.com/p.png\"]' --param iw=1.5\n"
            "  jobhook submit inpaint --provider simulator-apimart --parent task_01J... --wait"
            "   # stops at MODAL\n"
        ),
    )
    submit.add_argument("action", metavar="ACTION", help="imagine, upscale, variation, ...")
    submit.add_argument(
        "-p",
        "--param",
        action="append",
        type=parse_param,
        metavar="KEY=VALUE",
        help="a task parameter; repeat for more",
    )
    submit.add_argument("--provider", metavar="P", help="default: the server's default provider")
    submit.add_argument(
        "--parent", dest="parent_id", metavar="ID", help="the task a follow-up acts on"
    )
    submit.add_argument("--callback-url", metavar="URL", help="where jobhook POSTs the outcome")
    submit.add_argument("--wait", action="store_true", help=wait_help)
    submit.add_argument("--json", action="store_true", help="print the task as JSON")
    submit.set_defaults(run=run_submit, client=True)

    status = sub.add_parser(
        "status",
        parents=[common],
        help="show one task (optionally waiting for it)",
        description="Show a task by its jobhook id or its provider's task id: status, result "
        "URLs (grid, images, videos) or the error.",
        epilog="exit codes: 0 the task is running, MODAL or SUCCESS (with --wait: SUCCESS or "
        "MODAL), 1 FAILURE or CANCEL, 2 a usage or connection error\n\n"
        "examples:\n  jobhook status task_01J...\n  jobhook status task_01J... --wait --json\n",
    )
    status.add_argument("id", metavar="ID")
    status.add_argument("--wait", action="store_true", help=wait_help)
    status.add_argument("--json", action="store_true", help="print the task as JSON")
    status.set_defaults(run=run_status, client=True)

    tasks = sub.add_parser(
        "tasks",
        parents=[common],
        help="list tasks, newest first",
        description="List tasks, newest first, as a table sized to the terminal.",
        epilog="examples:\n  jobhook tasks --status IN_PROGRESS,SUBMITTED\n"
        "  jobhook tasks --provider simulator-apimart --action imagine --limit 10 --json\n",
    )
    tasks.add_argument("--status", metavar="S", help="comma-separated: SUCCESS,FAILURE,...")
    tasks.add_argument("--provider", metavar="P")
    tasks.add_argument("--action", metavar="A")
    tasks.add_argument("--limit", type=_limit, default=20, metavar="N", help="1-200 (default 20)")
    tasks.add_argument("--cursor", help="the next page, as printed after a full page")
    tasks.add_argument("--json", action="store_true", help="print the page as JSON")
    tasks.set_defaults(run=run_tasks, client=True)

    modal = sub.add_parser(
        "modal",
        parents=[common],
        help="send the mask and prompt a MODAL task waits for (APIMart inpaint)",
        description="Finish a MODAL task (APIMart's two-step inpaint): send the prompt and the "
        "mask, as a URL the provider fetches or a local PNG sent base64 (white = repaint, "
        "transparent = keep). The task goes back to SUBMITTED and on to SUCCESS.",
        epilog="examples:\n"
        "  jobhook modal task_01J... --prompt 'a red leather sofa' --mask-file mask.png --wait\n"
        "  jobhook modal task_01J... --prompt 'a hat' --mask-url https://cdn.example.com/m.png\n"
        "  jobhook modal task_01J... --prompt 'a red leather sofa' --sample-mask --wait\n",
    )
    modal.add_argument("id", metavar="ID")
    modal.add_argument("--prompt", help="what to paint in the masked area")
    mask = modal.add_mutually_exclusive_group()
    mask.add_argument("--mask-url", metavar="URL", help="a public URL of the mask PNG")
    mask.add_argument("--mask-file", metavar="PNG", help="a local mask PNG (sent base64)")
    mask.add_argument(
        "--sample-mask",
        action="store_true",
        help="a built-in 64x64 mask (a white square in the middle: repaint it), to try the flow",
    )
    modal.add_argument("--wait", action="store_true", help=wait_help)
    modal.add_argument("--json", action="store_true", help="print the task as JSON")
    modal.set_defaults(run=run_modal, client=True)
