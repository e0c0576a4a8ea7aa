"""The simulator's APIMart: every Midjourney generation endpoint, the two-step inpaint (MODAL,
then the modal call, or CANCEL after the timeout), both task shapes, Bearer auth and APIMart's
`{"code", "msg"}` errors. APIMart sends no callbacks: clients poll.

`/v1/tasks/{id}` has no MODAL in its vocabulary; a MODAL task shows there as `pending`.

Where APIMart's docs allow two readings the simulator does both, picked by a prompt marker or a
fault switch (service/simulator/faults.py): `[newid]` / `modal_new_id` answers the modal call
with a new task id, as seed 000's example does (the old id then stays SUBMITTED for good: only
the new one runs); `[pollmodal]` / `modal_by_poll` answers an inpaint or a CustomZoom
`submitted` and moves it to MODAL a step later, so only polling sees it (seed 002's state
machine). A zoom by a `MJ::CustomZoom::` button enters MODAL like an inpaint (seed 002).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from service.simulator.app import Simulator

FOLLOW_UPS: Final = frozenset(
    {"upscale", "variation", "high-variation", "low-variation", "reroll", "zoom", "pan", "inpaint"}
)
ACTIONS: Final = FOLLOW_UPS | {"imagine", "video", "blend", "describe", "edits"}
NEEDS_INDEX: Final = frozenset({"upscale", "variation", "high-variation", "low-variation"})
#: `/v1/tasks` vocabulary for each `/v1/midjourney` status.
TASK_STATUS: Final = {
    "NOT_START": "pending",
    "SUBMITTED": "pending",
    "MODAL": "pending",
    "IN_PROGRESS": "processing",
    "SUCCESS": "completed",
    "FAILURE": "failed",
    "CANCEL": "cancelled",
}
FAIL_MARK: Final = "[fail]"
NEVER_MARK: Final = "[never]"
NEW_ID_MARK: Final = "[newid]"
MODAL_BY_POLL_MARK: Final = "[pollmodal]"
CUSTOM_ZOOM: Final = "MJ::CustomZoom::"
FAIL_REASON: Final = "Job failed: the prompt was flagged by moderation; credits refunded"
CANCEL_REASON: Final = "no modal call within 30 minutes: cancelled and refunded"
#: APIMart cancels a task left in MODAL this long.
MODAL_TIMEOUT_SECONDS: Final = 1800
KEEP_SECONDS: Final = 3 * 24 * 3600
MASK_MAX_BYTES: Final = 12 * 1024 * 1024
_SPEEDS: Final = frozenset({"relax", "fast", "turbo"})
#: name -> (low, high, whole numbers only)
_RANGES: Final = {
    "stylize": (0, 1000, True),
    "chaos": (0, 100, True),
    "weird": (0, 3000, True),
    "iw": (0, 3, False),
    "cw": (0, 100, True),
    "sw": (0, 1000, True),
    "repeat": (2, 40, True),
}
#: How many image_urls each action takes: (at least, at most).
_IMAGE_COUNTS: Final = {"video": (1, 1), "describe": (1, 4), "blend": (2, 4), "edits": (1, 10)}
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VIDEO_TYPE_RE: Final = re.compile(r"vid_\d+\.\d+_i2v_(start_end_)?(480|720)")
_PNG_PREFIX: Final = "data:image/png;base64,"
_PANS: Final = ("left", "right", "up", "down")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApimartJob:
    """One simulated task; replaced whole on every change, like a row."""

    id: str
    api_key: str
    #: the APIMart endpoint that made it: imagine, upscale, high-variation...
    action: str
    prompt: str
    base_url: str
    submit_time: int
    parent_id: str | None = None
    batch_size: int = 1
    status: str = "NOT_START"
    progress: int = 0
    image_urls: tuple[str, ...] = ()
    grid_image_url: str | None = None
    video_urls: tuple[str, ...] = ()
    #: (label, customId)
    buttons: tuple[tuple[str, str], ...] = ()
    description: str | None = None
    fail_reason: str | None = None
    start_time: int | None = None
    finish_time: int | None = None

    def to_midjourney(self) -> dict[str, Any]:
        """The task as `GET /v1/midjourney/{id}` returns it (no envelope)."""
        body: dict[str, Any] = {
            "id": self.id,
            "action": self.action.upper().replace("-", "_"),
            "status": self.status,
            "progress": f"{self.progress}%",
            "prompt": self.prompt,
            "grid_image_url": self.grid_image_url,
            "image_urls": list(self.image_urls),
            "buttons": [{"customId": custom, "label": label} for label, custom in self.buttons],
            "fail_reason": self.fail_reason,
            "submit_time": self.submit_time,
            "start_time": self.start_time,
            "finish_time": self.finish_time,
        }
        if self.action == "video":
            body["video_urls"] = list(self.video_urls)
        if self.description is not None:
            body["description"] = self.description
        return body

    def to_task(self) -> dict[str, Any]:
        """The task as `GET /v1/tasks/{id}` returns it inside `{"code": 200, "data": ...}`."""
        data: dict[str, Any] = {
            "id": self.id,
            "status": TASK_STATUS[self.status],
            "progress": self.progress,
            "created": self.submit_time // 1000,
        }
        if self.finish_time is not None:
            data["completed"] = self.finish_time // 1000
        expires_at = (self.finish_time or self.submit_time) // 1000 + KEEP_SECONDS
        result: dict[str, Any] = {}
        if self.image_urls:
            # A list of URLs for a grid, a single string for one image: both forms are live.
            urls = list(self.image_urls)
            url: Any = urls if len(urls) > 1 else urls[0]
            result["images"] = [{"url": url, "expires_at": expires_at}]
        if self.video_urls:
            result["videos"] = [{"url": list(self.video_urls), "expires_at": expires_at}]
        if result:
            data["result"] = result
        if self.status == "FAILURE":
            data["error"] = {"message": self.fail_reason}
        return data


class ApimartSimulator:
    """APIMart's routes and tasks inside one `Simulator`."""

    def __init__(self, sim: Simulator, *, modal_timeout_steps: int | None = None) -> None:
        self._sim = sim
        self.jobs: dict[str, ApimartJob] = {}
        #: clock steps a task may wait in MODAL before it is cancelled (30 minutes by default)
        self.modal_timeout_steps = modal_timeout_steps or max(
            1, math.ceil(MODAL_TIMEOUT_SECONDS / sim.step_seconds)
        )
        self._modal_timers: dict[str, asyncio.Task[Any]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/v1/midjourney/generations", self._generate, methods=["POST"]),
            Route("/v1/midjourney/generations/{action}", self._generate, methods=["POST"]),
            Route("/v1/midjourney/{id}", self._midjourney, methods=["GET"]),
            Route("/v1/tasks/{id}", self._task, methods=["GET"]),
        ]

    async def _generate(self, request: Request) -> JSONResponse:
        key = _bearer(request)
        if not self._sim.authorized(key):
            return _unauthorized()
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _invalid("request body must be a JSON object")
        action = request.path_params.get("action", "imagine")
        if action == "modal":
            return self._modal(key, body)
        if action not in ACTIONS:
            return _invalid(f"unsupported action {action!r}")
        message = _check(action, body)
        if message is not None:
            return _invalid(message)
        parent = None
        if action in FOLLOW_UPS:
            found = self._parent(key, action, body)
            if isinstance(found, JSONResponse):
                return found
            parent = found
        return self._create(request, key, action, body, parent)

    async def _midjourney(self, request: Request) -> JSONResponse:
        found = self._lookup(request)
        return found if isinstance(found, JSONResponse) else JSONResponse(found.to_midjourney())

    async def _task(self, request: Request) -> JSONResponse:
        found = self._lookup(request)
        if isinstance(found, JSONResponse):
            return found
        return JSONResponse({"code": 200, "data": found.to_task()})

    def _lookup(self, request: Request) -> ApimartJob | JSONResponse:
        key = _bearer(request)
        if not self._sim.authorized(key):
            return _unauthorized()
        return self._owned(key, request.path_params["id"])

    def _owned(self, key: str, task_id: Any) -> ApimartJob | JSONResponse:
        job = self.jobs.get(task_id) if isinstance(task_id, str) else None
        if job is None:
            return JSONResponse({"code": 3, "msg": "task not found"}, status_code=404)
        if job.api_key != key:
            msg = "the task belongs to another account"
            return JSONResponse({"code": 403, "msg": msg}, status_code=403)
        return job

    def _parent(self, key: str, action: str, body: dict[str, Any]) -> ApimartJob | JSONResponse:
        parent = self._owned(key, body["task_id"])
        if isinstance(parent, JSONResponse):
            return parent
        if parent.status != "SUCCESS":
            return _invalid(f"task {parent.id} is {parent.status}, not SUCCESS")
        if not parent.image_urls:
            return _invalid(f"task {parent.id} has no image to work on")
        custom_id = body.get("custom_id")
        if custom_id is not None and custom_id not in {c for _, c in parent.buttons}:
            return _invalid(f"custom_id is not a button of task {parent.id}")
        index = body.get("index") or _button_index(custom_id)
        if index > len(parent.image_urls):
            return _invalid(
                f"index {index}: task {parent.id} has {len(parent.image_urls)} image(s)"
            )
        if action == "upscale" and len(parent.image_urls) == 1:
            return _invalid(f"task {parent.id} is already a single image")
        if action == "inpaint" and parent.action != "upscale":
            return _invalid("inpaint needs a SUCCESS upscaled single image: call upscale first")
        return parent

    def _create(
        self,
        request: Request,
        key: str,
        action: str,
        body: dict[str, Any],
        parent: ApimartJob | None,
    ) -> JSONResponse:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            prompt = parent.prompt if parent is not None else ""
        batch = body.get("batch_size")
        job = ApimartJob(
            id=self._new_id(),
            api_key=key,
            action=action,
            prompt=prompt,
            base_url=self._sim.base_url(request),
            submit_time=_now_ms(),
            parent_id=parent.id if parent is not None else None,
            # APIMart treats a batch_size other than 1, 2 or 4 as 1.
            batch_size=batch if batch in (2, 4) and not isinstance(batch, bool) else 1,
        )
        custom_id = body.get("custom_id")
        zoom_by_button = action == "zoom" and str(custom_id or "").startswith(CUSTOM_ZOOM)
        if action == "inpaint" or zoom_by_button:
            if MODAL_BY_POLL_MARK in prompt or self._sim.faults.modal_by_poll:
                self.jobs[job.id] = dataclasses.replace(job, status="SUBMITTED", progress=5)
                self._sim.spawn(self._enter_modal(job.id))
                return _submitted(job.id)
            self._enter_modal_now(job)
            return JSONResponse({"task_id": job.id, "status": "modal", "model": "midjourney"})
        self.jobs[job.id] = job
        self._sim.spawn(self._run(job.id))
        return _submitted(job.id)

    def _modal(self, key: str, body: dict[str, Any]) -> JSONResponse:
        if not isinstance(body.get("task_id"), str) or not body["task_id"]:
            return _invalid("task_id is required")
        job = self._owned(key, body["task_id"])
        if isinstance(job, JSONResponse):
            return job
        if job.status != "MODAL":
            return _invalid(f"task {job.id} is {job.status}, not MODAL")
        prompt, speed = body.get("prompt"), body.get("speed")
        if prompt is not None and not isinstance(prompt, str):
            return _invalid("prompt must be a string")
        if speed is not None and speed not in _SPEEDS:
            return _invalid("speed must be relax, fast or turbo")
        message = _check_mask_url(body.get("mask_url"))
        if message is not None:
            return _invalid(message)
        timer = self._modal_timers.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        self._set(job.id, status="SUBMITTED", progress=20, prompt=prompt or job.prompt)
        run_id = job.id
        if NEW_ID_MARK in (prompt or job.prompt) or self._sim.faults.modal_new_id:
            # Seed 000's example: the answer names another task, which is the one that runs.
            run_id = self._new_id()
            self.jobs[run_id] = dataclasses.replace(self.jobs[job.id], id=run_id)
        self._sim.spawn(self._run(run_id, after_modal=True))
        return _submitted(run_id)

    async def _run(self, job_id: str, *, after_modal: bool = False) -> None:
        """SUBMITTED 10%, IN_PROGRESS 40/70/99%, then SUCCESS or FAILURE: a clock step apiece."""
        if not after_modal:
            await self._sim.tick()
            self._set(job_id, status="SUBMITTED", progress=10)
        for progress in (40, 70, 99):
            await self._sim.tick()
            started = self.jobs[job_id].start_time or _now_ms()
            self._set(job_id, status="IN_PROGRESS", progress=progress, start_time=started)
        job = self.jobs[job_id]
        if NEVER_MARK in job.prompt:
            return
        await self._sim.tick()
        if FAIL_MARK in job.prompt:
            self._set(
                job_id,
                status="FAILURE",
                progress=100,
                fail_reason=FAIL_REASON,
                finish_time=_now_ms(),
            )
            return
        self._set(job_id, status="SUCCESS", progress=100, finish_time=_now_ms(), **_outputs(job))

    def _enter_modal_now(self, job: ApimartJob) -> None:
        """MODAL 15%, waiting for the modal call; cancelled if none comes in time."""
        self.jobs[job.id] = dataclasses.replace(job, status="MODAL", progress=15)
        self._modal_timers[job.id] = self._sim.spawn(self._expire_modal(job.id))

    async def _enter_modal(self, job_id: str) -> None:
        """Answered `submitted`: MODAL a clock step later, found only by polling."""
        await self._sim.tick()
        self._enter_modal_now(self.jobs[job_id])

    async def _expire_modal(self, job_id: str) -> None:
        for _ in range(self.modal_timeout_steps):
            await self._sim.tick()
        self._modal_timers.pop(job_id, None)
        if self.jobs[job_id].status == "MODAL":
            self._set(job_id, status="CANCEL", fail_reason=CANCEL_REASON, finish_time=_now_ms())

    def _set(self, job_id: str, **changes: Any) -> None:
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], **changes)

    def _new_id(self) -> str:
        """`task_` + 26 Crockford base32 characters from the seeded generator."""
        bits = self._sim.rng.getrandbits(130)
        return "task_" + "".join(_CROCKFORD[(bits >> (5 * n)) & 31] for n in range(25, -1, -1))


def _outputs(job: ApimartJob) -> dict[str, Any]:
    """What a finished task carries, by the kind of job."""
    if job.action == "video":
        videos = tuple(
            f"{job.base_url}videos/{job.id}-{n}.mp4" for n in range(1, job.batch_size + 1)
        )
        return {"video_urls": videos}
    if job.action == "describe":
        # As documented: four suggestions, one a line, each after a keycap digit (1️⃣..4️⃣).
        ideas = (
            "a softly lit studio photo",
            "a watercolor study",
            "a wide cinematic shot",
            "a macro close-up",
        )
        lines = [f"{n}\ufe0f\u20e3 {idea}, the subject --ar 1:1" for n, idea in enumerate(ideas, 1)]
        return {"description": "\n".join(lines)}
    tag = hashlib.sha256(job.id.encode()).hexdigest()[:12]
    if job.action == "upscale":
        buttons: list[tuple[str, str]] = [
            ("Vary (Strong)", f"MJ::JOB::high_variation::1::{tag}::SOLO"),
            ("Vary (Subtle)", f"MJ::JOB::low_variation::1::{tag}::SOLO"),
            ("Vary (Region)", f"MJ::Inpaint::1::{tag}::SOLO"),
            ("Zoom Out 2x", f"MJ::Outpaint::50::1::{tag}::SOLO"),
            ("Zoom Out 1.5x", f"MJ::Outpaint::75::1::{tag}::SOLO"),
        ]
        buttons += [(f"Pan {d.title()}", f"MJ::JOB::pan_{d}::1::{tag}::SOLO") for d in _PANS]
        buttons.append(("Custom Zoom", f"{CUSTOM_ZOOM}{tag}"))
        return {"image_urls": (f"{job.base_url}images/{job.id}-1.png",), "buttons": tuple(buttons)}
    buttons = [(f"U{n}", f"MJ::JOB::upsample::{n}::{tag}") for n in range(1, 5)]
    buttons += [(f"V{n}", f"MJ::JOB::variation::{n}::{tag}") for n in range(1, 5)]
    buttons.append(("\U0001f504", f"MJ::JOB::reroll::0::{tag}::SOLO"))
    return {
        "image_urls": tuple(f"{job.base_url}images/{job.id}-{n}.png" for n in range(1, 5)),
        "grid_image_url": f"{job.base_url}images/{job.id}-grid.png",
        "buttons": tuple(buttons),
    }


def _check(action: str, body: dict[str, Any]) -> str | None:
    """The first thing APIMart would refuse in `body`, as its message; None if it is fine."""
    prompt = body.get("prompt")
    if action in ("imagine", "edits") and not (isinstance(prompt, str) and prompt.strip()):
        return "prompt is required"
    if prompt is not None and not isinstance(prompt, str):
        return "prompt must be a string"
    if body.get("speed") is not None and body["speed"] not in _SPEEDS:
        return "speed must be relax, fast or turbo"
    for name, (low, high, whole) in _RANGES.items():
        value = body.get(name)
        if value is None:
            continue
        kinds = int if whole else int | float
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            return f"{name} must be between {low} and {high}"
    urls = body.get("image_urls")
    least, most = _IMAGE_COUNTS.get(action, (0, 10))
    if urls is not None or least:
        if not isinstance(urls, list) or not least <= len(urls) <= most:
            return f"{action} takes {least} to {most} image_urls"
        if not all(_is_url(url) or _is_inline_image(url) for url in urls):
            return "image_urls must be http(s) URLs or base64 images of at most 12 MiB"
    if action == "video":
        video_type = body.get("video_type")
        if video_type is not None and not (
            isinstance(video_type, str) and _VIDEO_TYPE_RE.fullmatch(video_type)
        ):
            return "video_type must be like vid_1.1_i2v_480"
        if body.get("end_url") is not None and not _is_url(body["end_url"]):
            return "end_url must be an http(s) URL"
    if action in FOLLOW_UPS:
        return _check_follow_up(action, body)
    return None


def _check_follow_up(action: str, body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("task_id"), str) or not body["task_id"]:
        return "task_id is required"
    index, custom_id = body.get("index"), body.get("custom_id")
    if custom_id is not None and not isinstance(custom_id, str):
        return "custom_id must be a string"
    if index is not None and (isinstance(index, bool) or index not in (1, 2, 3, 4)):
        return "index must be 1 to 4"
    if action in NEEDS_INDEX and index is None and custom_id is None:
        return "index (or custom_id) is required"
    ratio = body.get("zoom_ratio")
    ratio_ok = not isinstance(ratio, bool) and isinstance(ratio, int | float) and 1 < ratio <= 2
    if action == "zoom" and (ratio is not None or custom_id is None) and not ratio_ok:
        return "zoom_ratio must be above 1 and at most 2"
    direction = body.get("direction")
    if action == "pan" and (direction is not None or custom_id is None) and direction not in _PANS:
        return "direction must be up, down, left or right"
    return None


def _check_mask_url(value: Any) -> str | None:
    if value is None or _is_url(value):
        return None
    if not isinstance(value, str) or not value.startswith(_PNG_PREFIX):
        return "mask_url must be an http(s) URL or data:image/png;base64,..."
    payload = value[len(_PNG_PREFIX) :]
    if len(payload) // 4 * 3 > MASK_MAX_BYTES + 2:
        return "mask is larger than 12 MiB"
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return "mask_url is not valid base64"
    if not decoded or len(decoded) > MASK_MAX_BYTES:
        return "mask must be 1 byte to 12 MiB"
    return None


def _is_inline_image(value: Any) -> bool:
    """`data:image/<type>;base64,<payload>`: valid base64 of 1 byte to 12 MiB."""
    match = re.match(r"data:image/[a-z]+;base64,", value) if isinstance(value, str) else None
    if match is None:
        return False
    payload = value[match.end() :]
    if len(payload) // 4 * 3 > MASK_MAX_BYTES + 2:
        return False
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return False
    return 0 < len(decoded) <= MASK_MAX_BYTES


def _button_index(custom_id: Any) -> int:
    """`MJ::JOB::upsample::3::abc` names image 3; buttons of a single image name image 1."""
    parts = custom_id.split("::") if isinstance(custom_id, str) else []
    if len(parts) >= 4 and parts[1] == "JOB" and parts[3].isdigit() and int(parts[3]) >= 1:
        return int(parts[3])
    return 1


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"https?://[^/\s]+", value) is not None


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def _submitted(task_id: str) -> JSONResponse:
    return JSONResponse({"code": 200, "data": [{"status": "submitted", "task_id": task_id}]})


def _invalid(message: str) -> JSONResponse:
    return JSONResponse({"code": 4, "msg": message}, status_code=400)


def _unauthorized() -> JSONResponse:
    return JSONResponse({"code": 401, "msg": "invalid or missing API key"}, status_code=401)


def _now_ms() -> int:
    return int(time.time() * 1000)
