"""`jobhook demo`: seed 002's APIMart flows A-E, step by step, against the simulator of a running
jobhook (provider `simulator-apimart`), narrated on stdout and summed up in a table.
"""

from __future__ import annotations

import argparse
import base64
import shlex
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import orjson

from service.cli_api import Api, ApiError, open_api

APIMART = "simulator-apimart"
#: The images the image-guided flows point at: served by the simulator of the jobhook the demo
#: talks to (loopback, which jobhook's dev mode lets through; never another host).
IMAGE_PATH = "/_sim/images/demo-product.png"
END_PATH = "/_sim/images/demo-sunset.png"


def mask_png(size: int = 64) -> bytes:
    """An RGBA PNG mask: an opaque white square in the middle (repaint), transparent around it."""
    lo, hi = size // 4, 3 * size // 4
    rows = b"".join(
        b"\x00"  # each scanline starts with its filter type: none
        + b"".join(
            b"\xff\xff\xff\xff" if lo <= x < hi and lo <= y < hi else bytes(4) for x in range(size)
        )
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows, 9)),
            chunk(b"IEND", b""),
        )
    )


@dataclass(slots=True, kw_only=True)
class Step:
    flow: str
    name: str
    expected: str
    task_id: str = "-"
    #: the task's last status; `error` when jobhook refused the request, `skipped` when an
    #: earlier step of the flow went wrong
    status: str = "skipped"
    #: what was wrong besides the status (a missing result), if anything
    problem: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == self.expected and not self.problem


def _command(body: dict[str, Any]) -> str:
    """The `jobhook submit` command line that sends `body`."""
    words = ["jobhook", "submit", body["action"]]
    if "provider" in body:
        words += ["--provider", body["provider"]]
    if "parent_id" in body:
        words += ["--parent", body["parent_id"]]
    for key, value in body["params"].items():
        text = value if isinstance(value, str) else _json(value)
        words += ["--param", f"{key}={text}"]
    return shlex.join(words)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


class Demo:
    def __init__(self, api: Api, out: IO[str], *, step_delay: float = 0.0) -> None:
        self.api = api
        self.out = out
        self.step_delay = step_delay
        self.steps: list[Step] = []
        self.image_url = api.base_url + IMAGE_PATH
        self.end_url = api.base_url + END_PATH

    def say(self, text: str = "", end: str = "\n") -> None:
        self.out.write(text + end)
        self.out.flush()

    def _pause(self) -> None:
        if self.steps and self.step_delay > 0:
            time.sleep(self.step_delay)

    def _follow(self, step: Step, task: dict[str, Any], started: float) -> dict[str, Any]:
        """Wait for the task, printing each change inline, then its result URLs."""
        seen: list[tuple[str, int]] = []

        def show(t: dict[str, Any]) -> None:
            state = (t["status"], t.get("progress") or 0)
            if not seen or state != seen[-1]:
                self.say(("" if not seen else " ->") + f" {state[0]} {state[1]}%", end="")
                seen.append(state)

        self.say(f"      {task['id']}:", end="")
        task = self.api.wait(task, show)
        step.task_id, step.status = task["id"], task["status"]
        step.seconds = time.monotonic() - started
        self.say(f"  ({step.seconds:.1f} s)")
        result = task.get("result") or {}
        if result.get("grid_url"):
            self.say(f"      grid     {result['grid_url']}")
        for kind in ("images", "videos"):
            for n, url in enumerate(result.get(kind) or (), 1):
                self.say(f"      {kind[:-1]} {n:<2} {url}")
        if task.get("error"):
            self.say(f"      error    {task['error'].get('message')}")
        return task

    def submit(
        self,
        flow: str,
        name: str,
        body: dict[str, Any],
        *,
        expected: str = "SUCCESS",
        check: Callable[[dict[str, Any]], str] | None = None,
    ) -> dict[str, Any] | None:
        """One step: submit `body`, follow the task, check it ended `expected` (and `check`)."""
        self._pause()
        step = Step(flow=flow, name=name, expected=expected)
        self.steps.append(step)
        self.say(f"  {flow}{sum(s.flow == flow for s in self.steps)}  {name}")
        self.say(f"      $ {_command(body)}")
        started = time.monotonic()
        try:
            task = self._follow(step, self.api.submit(body), started)
        except ApiError as exc:
            step.status, step.problem = "error", str(exc)
            self.say(f"\n      jobhook: {exc}")
            return None
        if check is not None and task["status"] == expected:
            step.problem = check(task)
        if not step.ok:
            self.say(f"      !! expected {expected}{', ' + step.problem if step.problem else ''}")
            return None
        return task

    def modal(self, flow: str, task: dict[str, Any], prompt: str) -> dict[str, Any] | None:
        """Flow C's second half: send the mask (a PNG made here, base64) and follow to SUCCESS."""
        self._pause()
        step = Step(flow=flow, name="modal: mask + prompt", expected="SUCCESS")
        self.steps.append(step)
        png = mask_png()
        self.say(f"  {flow}{sum(s.flow == flow for s in self.steps)}  modal: send the mask")
        self.say(
            f"      $ jobhook modal {task['id']} --prompt {shlex.quote(prompt)} "
            f"--mask-file mask.png   # a {len(png)}-byte 64x64 PNG made here, sent base64"
        )
        started = time.monotonic()
        body = {"prompt": prompt, "mask": base64.b64encode(png).decode()}
        try:
            task = self._follow(step, self.api.modal(task["id"], body), started)
        except ApiError as exc:
            step.status, step.problem = "error", str(exc)
            self.say(f"\n      jobhook: {exc}")
            return None
        step.problem = _images(4)(task) if task["status"] == "SUCCESS" else ""
        return task if step.ok else None

    def skip(self, flow: str, *names: str) -> None:
        for name in names:
            self.steps.append(Step(flow=flow, name=name, expected="SUCCESS"))

    def summary(self, seconds: float) -> bool:
        self.say()
        rows = [("FLOW", "STEP", "TASK", "EXPECTED", "GOT", "TIME", "")]
        for s in self.steps:
            verdict = "ok" if s.ok else f"!! {s.problem}" if s.problem else "!!"
            got, took = s.status, f"{s.seconds:.1f}s" if s.seconds else "-"
            rows.append((s.flow, s.name, s.task_id, s.expected, got, took, verdict))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        flows = sorted({s.flow for s in self.steps})
        bad = sorted({s.flow for s in self.steps if not s.ok})
        self.say()
        if bad:
            names = f"flow {bad[0]}" if len(bad) == 1 else f"flows {', '.join(bad)}"
            self.say(f"{names} did not end as expected ({seconds:.0f} s)")
        else:
            self.say(
                f"all {len(flows)} flows ({len(self.steps)} steps) ended as expected "
                f"in {seconds:.0f} s"
            )
        return not bad


def _images(n: int) -> Callable[[dict[str, Any]], str]:
    def check(task: dict[str, Any]) -> str:
        got = len((task.get("result") or {}).get("images") or ())
        return "" if got == n else f"{got} images, expected {n}"

    return check


def _videos(task: dict[str, Any]) -> str:
    return "" if (task.get("result") or {}).get("videos") else "no videos"


def flow_a(d: Demo) -> dict[str, Any] | None:
    """Imagine, then upscale image 2; the upscale is the parent of flows C and D."""
    d.say("\nFlow A: text to image (imagine -> upscale)")
    grid = d.submit(
        "A",
        "imagine",
        {
            "provider": APIMART,
            "action": "imagine",
            "params": {
                "prompt": "a futuristic city at sunset, photorealistic, cinematic lighting",
                "version": "8.1",
                "aspect_ratio": "16:9",
                "speed": "fast",
                "stylize": 250,
            },
        },
        check=_images(4),
    )
    if grid is None:
        d.skip("A", "upscale image 2")
        return None
    return d.submit(
        "A",
        "upscale image 2",
        {"action": "upscale", "parent_id": grid["id"], "params": {"index": 2}},
        check=_images(1),
    )


def flow_b(d: Demo) -> None:
    d.say("\nFlow B: image guidance -> strong variation -> upscale")
    grid = d.submit(
        "B",
        "image-guided imagine",
        {
            "provider": APIMART,
            "action": "imagine",
            "params": {
                "prompt": "turn this product into a luxury studio photo",
                "image_urls": [d.image_url],
                "iw": 1.5,
                "aspect_ratio": "1:1",
            },
        },
        check=_images(4),
    )
    if grid is None:
        d.skip("B", "high variation of 1", "upscale image 3")
        return
    varied = d.submit(
        "B",
        "high variation of 1",
        {
            "action": "high_variation",
            "parent_id": grid["id"],
            "params": {"index": 1, "speed": "fast"},
        },
        check=_images(4),
    )
    if varied is None:
        d.skip("B", "upscale image 3")
        return
    d.submit(
        "B",
        "upscale image 3",
        {"action": "upscale", "parent_id": varied["id"], "params": {"index": 3}},
        check=_images(1),
    )


def flow_c(d: Demo, upscaled: dict[str, Any] | None) -> None:
    d.say("\nFlow C: inpaint (inpaint -> MODAL -> modal call -> SUCCESS), on A's upscale")
    if upscaled is None:
        d.skip("C", "inpaint", "modal: mask + prompt")
        return
    waiting = d.submit(
        "C",
        "inpaint",
        {"action": "inpaint", "parent_id": upscaled["id"], "params": {}},
        expected="MODAL",
    )
    if waiting is None:
        d.skip("C", "modal: mask + prompt")
        return
    d.say("      MODAL: the task waits for the client's mask and prompt (30 min, then CANCEL)")
    d.modal("C", waiting, "replace the selected area with a red leather sofa")


def flow_d(d: Demo, upscaled: dict[str, Any] | None) -> None:
    d.say("\nFlow D: zoom out 1.5x (no mask, no MODAL), on A's upscale")
    if upscaled is None:
        d.skip("D", "zoom 1.5")
        return
    d.submit(
        "D",
        "zoom 1.5",
        {
            "action": "zoom",
            "parent_id": upscaled["id"],
            "params": {"zoom_ratio": 1.5, "speed": "fast"},
        },
        check=_images(4),  # zooming out makes a new grid
    )


def flow_e(d: Demo) -> None:
    d.say("\nFlow E: image to video (720p, a batch of 4; then a start/end frame transition)")
    d.submit(
        "E",
        "video, batch of 4",
        {
            "provider": APIMART,
            "action": "video",
            "params": {
                "prompt": "city traffic at night, neon reflections, slow camera dolly",
                "image_urls": [d.image_url],
                "video_type": "vid_1.1_i2v_720",
                "batch_size": 4,
            },
        },
        check=_videos,
    )
    d.submit(
        "E",
        "video, start -> end frame",
        {
            "provider": APIMART,
            "action": "video",
            "params": {
                "prompt": "transition smoothly from sunrise to sunset",
                "image_urls": [d.image_url],
                "end_url": d.end_url,
                "video_type": "vid_1.1_i2v_720",
            },
        },
        check=_videos,
    )


def run(args: argparse.Namespace) -> int:
    with open_api(args) as api:
        ready = api.request("GET", "/readyz")
        if APIMART not in (ready.get("providers") or ()):
            raise ApiError(
                f"jobhook at {api.base_url} has no {APIMART} provider: the demo needs the "
                "built-in simulator (on by default without JOBHOOK_API_KEYS; JOBHOOK_SIMULATOR=on)"
            )
        demo = Demo(api, sys.stdout, step_delay=args.step_delay)
        demo.say(f"jobhook demo: seed 002's APIMart flows A-E on {APIMART} at {api.base_url}")
        started = time.monotonic()
        try:
            upscaled = flow_a(demo)
            flow_b(demo)
            flow_c(demo, upscaled)
            flow_d(demo, upscaled)
            flow_e(demo)
        except KeyboardInterrupt:
            demo.say("\ninterrupted")
            demo.summary(time.monotonic() - started)
            return 130
        return 0 if demo.summary(time.monotonic() - started) else 1


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 60:
        raise argparse.ArgumentTypeError(f"expected 0 to 60 seconds, got {value!r}")
    return seconds


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run seed 002's APIMart flows A-E against the simulator, narrated",
        description=(
            "Run the APIMart flows of seed 002 step by step against a running jobhook's "
            "simulator (provider simulator-apimart), printing each request as the equivalent "
            "`jobhook submit` command, the task's progress and its result URLs, then a summary "
            "table. A: imagine -> upscale; B: image-guided imagine -> high_variation -> upscale; "
            "C: inpaint -> MODAL -> modal (a generated PNG mask) -> SUCCESS; D: zoom; E: video. "
            "With `jobhook serve`'s defaults (1 s simulator steps) it takes about a minute."
        ),
        epilog=(
            "exit codes: 0 every flow ended as expected, 1 one did not, 2 jobhook could not be "
            "reached (or has no simulator)\n\n"
            "examples:\n"
            "  ./scripts/serve &  jobhook demo\n"
            "  jobhook demo --url http://127.0.0.1:8001 --step-delay 2\n"
        ),
    )
    demo.add_argument(
        "--step-delay",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="pause S seconds between steps, to read along (default 0)",
    )
    demo.set_defaults(run=run, client=True)
