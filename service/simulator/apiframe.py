"""The simulator's Apiframe v2: generate, follow-up actions and job lookups in the documented wire
format, jobs moving on the shared clock, and webhooks signed the way Apiframe signs them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.providers.apiframe import sign_body
from service.simulator.faults import NO_FAULTS, CallbackFaults

if TYPE_CHECKING:
    from service.simulator.app import Simulator

ACTIONS: Final = frozenset({"upsample", "variation", "inpaint", "outpaint", "pan"})
EVENTS: Final = ("progress", "completed", "failed")
DEFAULT_EVENTS: Final = ("completed", "failed")
#: Credits per job, from Apiframe's pricing notes.
CREDITS: Final = {"imagine": 16, "upsample": 4}
FAIL_MARK: Final = "[fail]"
NEVER_MARK: Final = "[never]"
FAIL_MESSAGE: Final = "Provider returned an error: content policy violation"
_MASK_MAX_BYTES: Final = 8 * 1024 * 1024
_DATA_PREFIX_RE: Final = re.compile(r"data:image/[A-Za-z0-9.+-]+;base64,")
_ASPECT_RE: Final = re.compile(r"[1-9]\d*:[1-9]\d*")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiframeJob:
    """One simulated job; replaced whole on every change, like a row."""

    id: str
    api_key: str
    #: "imagine" or the Apiframe action that made the job.
    kind: str
    prompt: str
    base_url: str
    webhook_url: str | None
    webhook_events: tuple[str, ...]
    created_at: str
    status: str = "QUEUED"
    progress: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    webhook_status: str | None = None
    completed_at: str | None = None
    #: from prompt markers (`[dup]`, `[reorder]`...) and the simulator's global callback faults
    faults: CallbackFaults = NO_FAULTS

    @property
    def credit_cost(self) -> int:
        return 0 if self.status == "FAILED" else CREDITS.get(self.kind, 16)

    def to_json(self) -> dict[str, Any]:
        """The job as `GET /v2/jobs/{id}` returns it."""
        return {
            "id": self.id,
            "status": self.status,
            "model": "midjourney",
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "creditCost": self.credit_cost,
            "webhookStatus": self.webhook_status,
            "createdAt": self.created_at,
            "completedAt": self.completed_at,
        }


class ApiframeSimulator:
    """Apiframe's routes and jobs inside one `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.jobs: dict[str, ApiframeJob] = {}
        self._idempotent: dict[tuple[str, str], str] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/v2/images/generate", self._generate, methods=["POST"]),
            Route("/v2/images/midjourney/action", self._action, methods=["POST"]),
            Route("/v2/jobs/{id}", self._job, methods=["GET"]),
        ]

    async def _generate(self, request: Request) -> JSONResponse:
        key, body = await self._read(request)
        if isinstance(body, JSONResponse):
            return body
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 2000:
            return _invalid("prompt", "String must contain between 1 and 2000 character(s)")
        if body.get("model", "midjourney") != "midjourney":
            return _invalid("model", "Invalid enum value. Expected 'midjourney'")
        params = body.get("midjourneyParams", {})
        if not isinstance(params, dict):
            return _invalid("midjourneyParams", "Expected object")
        ratio = params.get("aspect_ratio")
        if ratio is not None and not (isinstance(ratio, str) and _ASPECT_RE.fullmatch(ratio)):
            return _invalid("midjourneyParams.aspect_ratio", "Expected W:H")
        return self._create(request, key, body, kind="imagine", prompt=prompt)

    async def _action(self, request: Request) -> JSONResponse:
        key, body = await self._read(request)
        if isinstance(body, JSONResponse):
            return body
        action, parent_id = body.get("action"), body.get("parentJobId")
        if action not in ACTIONS:
            return _invalid("action", f"Expected one of {', '.join(sorted(ACTIONS))}")
        if not isinstance(parent_id, str) or not parent_id:
            return _invalid("parentJobId", "Required")
        problem = _check_action_fields(action, body)
        if problem is not None:
            return problem
        parent = self.jobs.get(parent_id)
        if parent is None or parent.api_key != key:
            return JSONResponse({"error": "Job not found"}, status_code=404)
        if parent.status != "COMPLETED":
            return JSONResponse({"error": "Parent job is not completed"}, status_code=409)
        if action == "inpaint" and parent.kind != "upsample":
            return JSONResponse(
                {"error": "Inpaint needs a completed upsample job; upsample one image first"},
                status_code=400,
            )
        if action in ("upsample", "variation") and parent.kind == "upsample":
            return JSONResponse({"error": "Action not available for this job"}, status_code=409)
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            prompt = parent.prompt
        return self._create(request, key, body, kind=action, prompt=prompt)

    async def _job(self, request: Request) -> JSONResponse:
        key = request.headers.get("x-api-key")
        if not self._sim.authorized(key):
            return JSONResponse({"error": "Invalid API key"}, status_code=401)
        job = self.jobs.get(request.path_params["id"])
        if job is None or job.api_key != key:
            return JSONResponse({"error": "Job not found"}, status_code=404)
        return JSONResponse(job.to_json())

    async def _read(self, request: Request) -> tuple[str, dict[str, Any] | JSONResponse]:
        key = request.headers.get("x-api-key") or ""
        if not self._sim.authorized(key):
            return key, JSONResponse({"error": "Invalid API key"}, status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return key, JSONResponse({"error": "Invalid JSON body"}, status_code=400)
        if not isinstance(body, dict):
            return key, JSONResponse({"error": "Invalid JSON body"}, status_code=400)
        url, events = body.get("webhookUrl"), body.get("webhookEvents")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            return key, _invalid("webhookUrl", "Invalid url")
        if events is not None and not (
            isinstance(events, list) and events and all(event in EVENTS for event in events)
        ):
            return key, _invalid("webhookEvents", f"Expected a list of {', '.join(EVENTS)}")
        return key, body

    def _create(
        self, request: Request, key: str, body: dict[str, Any], *, kind: str, prompt: str
    ) -> JSONResponse:
        idempotency_key = request.headers.get("idempotency-key")
        replayed = self._idempotent.get((key, idempotency_key)) if idempotency_key else None
        if replayed is not None:
            return JSONResponse({"jobId": replayed, "status": "QUEUED"}, status_code=202)
        url = body.get("webhookUrl")
        job = ApiframeJob(
            id=self._sim.new_uuid(),
            api_key=key,
            kind=kind,
            prompt=prompt,
            base_url=self._sim.base_url(request),
            webhook_url=url,
            webhook_events=tuple(body.get("webhookEvents") or DEFAULT_EVENTS) if url else (),
            created_at=_now(),
            faults=self._sim.faults.for_prompt(prompt),
        )
        self.jobs[job.id] = job
        if idempotency_key:
            self._idempotent[(key, idempotency_key)] = job.id
        self._sim.spawn(self._run(job.id))
        return JSONResponse({"jobId": job.id, "status": "QUEUED"}, status_code=202)

    async def _run(self, job_id: str) -> None:
        """QUEUED, then PROCESSING 25/50/75, then COMPLETED or FAILED: one clock step apiece."""
        for progress in (25, 50, 75):
            await self._sim.tick()
            self._update(job_id, "progress", status="PROCESSING", progress=progress)
        job = self.jobs[job_id]
        if NEVER_MARK in job.prompt:
            return
        await self._sim.tick()
        if FAIL_MARK in job.prompt:
            self._update(job_id, "failed", status="FAILED", error=FAIL_MESSAGE, completed_at=_now())
            return
        if job.kind == "upsample":
            result: dict[str, Any] = {"images": [_image(job, "1")], "gridUrl": None}
        else:
            result = {
                "images": [_image(job, str(n)) for n in range(1, 5)],
                "gridUrl": _image(job, "grid"),
            }
        self._update(
            job_id,
            "completed",
            status="COMPLETED",
            progress=100,
            result=result,
            completed_at=_now(),
        )

    def _update(self, job_id: str, event: str, **changes: Any) -> None:
        job = dataclasses.replace(self.jobs[job_id], **changes)
        self.jobs[job_id] = job
        if job.webhook_url is None or event not in job.webhook_events:
            return
        body = json.dumps(_webhook_body(job, event), separators=(",", ":")).encode()

        def sign(raw: bytes) -> dict[str, str]:
            return {
                "Content-Type": "application/json",
                "X-Webhook-Event": event,
                "X-Webhook-Signature": sign_body(job.api_key, raw),
            }

        self._sim.send_webhook(
            job_id=job_id,
            url=job.webhook_url,
            event=event,
            body=body,
            headers=sign(body),
            on_done=lambda ok: self._record_delivery(job_id, ok),
            faults=job.faults,
            final=event != "progress",
            sign=sign,
        )

    def _record_delivery(self, job_id: str, delivered: bool) -> None:
        job = self.jobs[job_id]
        self.jobs[job_id] = dataclasses.replace(
            job, webhook_status="sent" if delivered else "failed"
        )


def _check_action_fields(action: str, body: dict[str, Any]) -> JSONResponse | None:
    if action in ("upsample", "variation"):
        index = body.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= 4:
            return _invalid("index", "Number must be between 1 and 4")
    elif action == "outpaint":
        ratio = body.get("zoomRatio")
        if isinstance(ratio, bool) or ratio not in (1.5, 2):
            return _invalid("zoomRatio", "Expected 1.5 or 2")
    elif action == "pan":
        if body.get("direction") not in ("up", "down", "left", "right"):
            return _invalid("direction", "Expected up, down, left or right")
    elif action == "inpaint":
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > 2000):
            return _invalid("prompt", "String must contain at most 2000 character(s)")
        return _check_mask(body.get("mask"))
    return None


def _check_mask(mask: Any) -> JSONResponse | None:
    if not isinstance(mask, str) or not mask:
        return _invalid("mask", "Required")
    payload = _DATA_PREFIX_RE.sub("", "".join(mask.split()), count=1)
    if len(payload) // 4 * 3 > _MASK_MAX_BYTES + 2:
        return _invalid("mask", "Mask is larger than 8 MB")
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return _invalid("mask", "Invalid base64")
    if not decoded or len(decoded) > _MASK_MAX_BYTES:
        return _invalid("mask", "Mask must be 1 byte to 8 MB")
    return None


def _webhook_body(job: ApiframeJob, event: str) -> dict[str, Any]:
    """The body Apiframe posts for `event` (examples/apiframe.webhook.*.json)."""
    if event == "progress":
        body = {"event": event, "jobId": job.id, "status": job.status, "progress": job.progress}
        return {**body, "model": "midjourney"}
    if event == "failed":
        body = {"event": event, "jobId": job.id, "status": job.status, "error": job.error}
        return {**body, "model": "midjourney"}
    return {
        "event": event,
        "jobId": job.id,
        "status": job.status,
        "progress": job.progress,
        "result": job.result,
        "model": "midjourney",
        "creditCost": job.credit_cost,
        "completedAt": job.completed_at,
    }


def _invalid(path: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": "Validation failed", "details": {path: [message]}}, status_code=400
    )


def _image(job: ApiframeJob, suffix: str) -> str:
    return f"{job.base_url}images/{job.id}-{suffix}.png"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
