"""The simulator's Vtrix: `POST /model/v1/generation` for the Midjourney follow-up models and
`GET /model/v1/generation/task/{id}`, with the documented 004006xxx validation codes, tasks
moving on the shared clock, and unsigned callbacks (Vtrix documents no body or signature: the
simulator posts the task object as the query returns it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from service.simulator.app import Simulator

MODELS: Final = frozenset(
    {"midjourney_inpaint", "midjourney_edit", "midjourney_remix", "midjourney_uploadpaint"}
)
#: Models whose mask is required (the others take one optionally).
MASK_REQUIRED: Final = frozenset({"midjourney_inpaint", "midjourney_uploadpaint"})
COST: Final = "0.05"
FAIL_MARK: Final = "[fail]"
NEVER_MARK: Final = "[never]"
#: The documented codes, as Vtrix's JSON prints them: integers, the leading zeros lost.
TASK_ID_MISSING: Final = 4006001
IMAGE_NO_MISSING: Final = 4006002
INVALID_IMAGE_NO: Final = 4006003
INVALID_PROMPT: Final = 4006004
MASK_MISSING: Final = 4006005
INVALID_MASK: Final = 4006006
INVALID_CALLBACK: Final = 4006007
GENERATION_FAILED: Final = 4006098
MESSAGES: Final = {
    TASK_ID_MISSING: "Task ID missing",
    IMAGE_NO_MISSING: "Image number missing",
    INVALID_IMAGE_NO: "Invalid image number",
    INVALID_PROMPT: "Invalid remix prompt length",
    MASK_MISSING: "Mask parameters missing",
    INVALID_MASK: "Invalid mask parameters",
    INVALID_CALLBACK: "Invalid callback URL",
    GENERATION_FAILED: "Generation failed",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VtrixTask:
    """One simulated task; replaced whole on every change, like a row."""

    id: str
    api_key: str
    model: str
    job_id: str
    image_no: int
    prompt: str
    base_url: str
    callback: str | None
    created_at: int
    status: str = "pending"
    progress: float = 0.0
    output: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The task as `GET /model/v1/generation/task/{id}` returns it."""
        body: dict[str, Any] = {"id": self.id, "status": self.status, "model": self.model}
        if self.status == "in_progress":
            body["progress"] = self.progress
        if self.status == "completed":
            body["progress"] = 1
            body["output"] = self.output
            body["usage"] = {"cost": COST, "discount": 0}
        if self.status == "failed":
            body["error"] = self.error
        return {**body, "metadata": {}, "created_at": self.created_at}


class VtrixSimulator:
    """Vtrix's routes and tasks inside one `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.tasks: dict[str, VtrixTask] = {}
        #: Midjourney jobs named as parents that this simulator did not make: it cannot know
        #: Vtrix's own jobs, so any unseen jobId is taken to be one.
        self.external_parents: set[str] = set()

    def routes(self) -> list[Route]:
        return [
            Route("/model/v1/generation", self._generate, methods=["POST"]),
            Route("/model/v1/generation/task/{id}", self._task, methods=["GET"]),
        ]

    async def _generate(self, request: Request) -> JSONResponse:
        key = _bearer(request)
        if not self._sim.authorized(key):
            return _error(401, 401, "Invalid API key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(400, 400, "Invalid JSON body")
        body = _flatten(body)
        model = body.get("model")
        if model not in MODELS:
            return _error(400, 400, f"Unsupported model: {model!r}")
        code = _check(model, body)
        if code is not None:
            return _error(400, code, MESSAGES[code])
        job_id = body["jobId"]
        if job_id not in self.tasks:
            self.external_parents.add(job_id)
        prompt = body.get("remixPrompt")
        task = VtrixTask(
            id=self._sim.new_uuid(),
            api_key=key or "",
            model=model,
            job_id=job_id,
            image_no=body["imageNo"],
            prompt=prompt if isinstance(prompt, str) else "",
            base_url=self._sim.base_url(request),
            callback=body.get("callback"),
            created_at=int(time.time()),
        )
        self.tasks[task.id] = task
        self._sim.spawn(self._run(task.id))
        return JSONResponse({"id": task.id, "status": task.status, "model": task.model})

    async def _task(self, request: Request) -> JSONResponse:
        key = _bearer(request)
        if not self._sim.authorized(key):
            return _error(401, 401, "Invalid API key")
        task = self.tasks.get(request.path_params["id"])
        if task is None or task.api_key != key:
            return _error(404, 404, "Task not found")
        return JSONResponse(task.to_json())

    async def _run(self, task_id: str) -> None:
        """pending, in_progress 0.25/0.5/0.75, then completed or failed: one clock step apiece."""
        for progress in (0.25, 0.5, 0.75):
            await self._sim.tick()
            self._update(task_id, status="in_progress", progress=progress)
        task = self.tasks[task_id]
        if NEVER_MARK in task.prompt:
            return
        await self._sim.tick()
        if FAIL_MARK in task.prompt:
            error = {"code": GENERATION_FAILED, "error_message": MESSAGES[GENERATION_FAILED]}
            self._update(task_id, status="failed", error=error)
            return
        output = [
            {"content": [{"type": "image", "url": f"{task.base_url}images/{task.id}-{n}.png"}]}
            for n in range(1, 5)
        ]
        self._update(task_id, status="completed", progress=1.0, output=output)

    def _update(self, task_id: str, **changes: Any) -> None:
        task = dataclasses.replace(self.tasks[task_id], **changes)
        self.tasks[task_id] = task
        if task.callback is None:
            return
        # No signature header: Vtrix documents none. The body is the task as the query shows it.
        self._sim.send_webhook(
            job_id=task_id,
            url=task.callback,
            event=task.status,
            body=json.dumps(task.to_json(), separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
            faults=self._sim.faults.for_prompt(task.prompt),
            final=task.status in ("completed", "failed"),
        )


def _check(model: str, body: dict[str, Any]) -> int | None:
    """The first documented error code the body earns, in the order the fields are listed."""
    job_id = body.get("jobId")
    if not isinstance(job_id, str) or not job_id.strip():
        return TASK_ID_MISSING
    image_no = body.get("imageNo")
    if image_no is None:
        return IMAGE_NO_MISSING
    if isinstance(image_no, bool) or not isinstance(image_no, int) or not 0 <= image_no <= 3:
        return INVALID_IMAGE_NO
    prompt = body.get("remixPrompt")
    if prompt is not None and (not isinstance(prompt, str) or not 1 <= len(prompt) <= 8192):
        return INVALID_PROMPT
    mask = body.get("mask")
    if mask is None:
        if model in MASK_REQUIRED:
            return MASK_MISSING
    elif not _valid_mask(mask):
        return INVALID_MASK
    callback = body.get("callback")
    if callback is not None and not _http_url(callback):
        return INVALID_CALLBACK
    return None


def _valid_mask(mask: Any) -> bool:
    if not isinstance(mask, dict):
        return False
    areas, url = mask.get("areas"), mask.get("url")
    if areas is None and url is None:
        return False
    if url is not None and not _http_url(url):
        return False
    return areas is None or (
        isinstance(areas, list) and bool(areas) and all(_valid_area(area) for area in areas)
    )


def _valid_area(area: Any) -> bool:
    if not isinstance(area, dict):
        return False
    sides = (area.get("width"), area.get("height"))
    if not all(isinstance(s, int) and not isinstance(s, bool) and 500 <= s <= 4096 for s in sides):
        return False
    points = area.get("points")
    return (
        isinstance(points, list)
        and len(points) >= 6
        and all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p)
            for p in points
        )
    )


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _flatten(body: dict[str, Any]) -> dict[str, Any]:
    """An older CLI wraps the fields as `{"model", "input": [{"params": {...}}]}`: take both."""
    wrapped = body.get("input")
    if isinstance(wrapped, list) and wrapped and isinstance(wrapped[0], dict):
        params = wrapped[0].get("params")
        if isinstance(params, dict):
            return {"model": body.get("model"), **params}
    return body


def _bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "error_message": message}}, status_code=status)
