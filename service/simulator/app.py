"""The provider simulator's shared core: the Starlette app, the clock, seeded ids, auth, the
webhook sender (with its injected faults) and the media routes every simulated provider uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from service.simulator.apiframe import ApiframeSimulator
from service.simulator.apimart import ApimartSimulator
from service.simulator.faults import (
    MALFORMED_BODY,
    NO_FAULTS,
    CallbackFaults,
    FaultGate,
    Faults,
    control_routes,
)
from service.simulator.png import image_for
from service.simulator.vtrix import VtrixSimulator

#: One try plus three retries per webhook; a provider that gives up sooner loses fewer hooks.
WEBHOOK_ATTEMPTS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SentWebhook:
    """One webhook attempt; `status_code` is None when no answer came (connect error...)."""

    job_id: str
    url: str
    event: str
    attempt: int
    status_code: int | None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hook:
    """One webhook waiting in a job's queue."""

    url: str
    event: str
    body: bytes
    headers: Mapping[str, str]
    on_done: Callable[[bool], None] | None = None


class Simulator:
    """Fake providers over real HTTP. `app` has no lifespan: await `start()` and `aclose()`."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        step_seconds: float = 0.5,
        api_keys: Collection[str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        modal_timeout_steps: int | None = None,
        open_controls: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        #: `/_faults` without a key (jobhook's dev mode: loopback callers only, no keys)
        self.open_controls = open_controls
        self.step_seconds = step_seconds
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.sent_webhooks: list[SentWebhook] = []
        self.request_counts: Counter[str] = Counter()
        self.faults = Faults()
        self.transport = transport
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # The last queued webhook per job: the next one waits for it, so hooks go out in order.
        self._tails: dict[str, asyncio.Task[bool]] = {}
        # Webhook faults: progress hooks held back by `reorder`; jobs already sent their garbage.
        self._held: dict[str, list[_Hook]] = {}
        self._malformed: set[str] = set()
        self.apiframe = ApiframeSimulator(self)
        self.apimart = ApimartSimulator(self, modal_timeout_steps=modal_timeout_steps)
        self.vtrix = VtrixSimulator(self)
        routes: list[BaseRoute] = [
            *self.apiframe.routes(),
            *self.apimart.routes(),
            *self.vtrix.routes(),
            Route("/images/{name}.png", self._image, methods=["GET"]),
            Route("/videos/{name}.mp4", self._video, methods=["GET"]),
            *control_routes(self),
        ]
        self.app = Starlette(routes=routes, middleware=[Middleware(FaultGate, sim=self)])
        self.app.state.simulator = self

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self.transport, trust_env=False, timeout=10)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tails.clear()
        self._held.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def new_uuid(self) -> str:
        """A uuid4 from the seeded generator, so a seeded simulator hands out the same ids."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def running(self, family: str) -> int:
        """Jobs a simulated provider (apiframe, apimart, vtrix) runs now: created, not ended."""
        if family == "apiframe":
            return sum(j.status in ("QUEUED", "PROCESSING") for j in self.apiframe.jobs.values())
        if family == "apimart":
            live = ("NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL")
            return sum(j.status in live for j in self.apimart.jobs.values())
        running = ("pending", "processing", "in_progress")
        return sum(t.status in running for t in self.vtrix.tasks.values())

    async def tick(self) -> None:
        """One step of the clock."""
        await asyncio.sleep(self.step_seconds)

    def authorized(self, key: str | None) -> bool:
        if not key:
            return False
        return self.api_keys is None or key in self.api_keys

    @staticmethod
    def base_url(request: Request) -> str:
        """This app's own base URL, mount prefix included, ending in `/`.

        `request.base_url` drops a Mount's prefix (it keeps only the top app's root_path), and
        URLs handed out (images) must point back into this app wherever it is mounted.
        """
        root = request.scope.get("root_path", "").rstrip("/")
        return str(request.base_url.replace(path=root + "/"))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a job's clock in the background; `aclose()` cancels it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def send_webhook(
        self,
        *,
        job_id: str,
        url: str,
        event: str,
        body: bytes,
        headers: Mapping[str, str],
        on_done: Callable[[bool], None] | None = None,
        faults: CallbackFaults = NO_FAULTS,
        final: bool = False,
        sign: Callable[[bytes], Mapping[str, str]] | None = None,
    ) -> None:
        """Queue one webhook; per job they go out one at a time, in the order queued.

        `faults` (the job's, from `self.faults.for_prompt`) bends that on purpose. `final` marks
        the terminal webhook, which releases what `reorder` held back; `sign` gives the headers
        for the garbage body of `malformed` (by default it goes with this webhook's headers).
        """
        hook = _Hook(url=url, event=event, body=body, headers=headers, on_done=on_done)
        if faults.drop:
            self.faults.injected["drop"] += 1
            return
        if faults.reorder and not final:
            self._held.setdefault(job_id, []).append(hook)
            self.faults.injected["reorder"] += 1
            return
        if faults.malformed and job_id not in self._malformed:
            self._malformed.add(job_id)
            self.faults.injected["malformed"] += 1
            garbage = _Hook(
                url=url,
                event="malformed",
                body=MALFORMED_BODY,
                headers=sign(MALFORMED_BODY) if sign is not None else headers,
            )
            # One attempt: a receiver rightly refuses it, and a retry would prove nothing.
            self._queue(job_id, garbage, delay=faults.delay, attempts=1)
        for queued in [hook, *(self._held.pop(job_id, []) if final else [])]:
            if faults.dup:
                self.faults.injected["dup"] += 1
                self._queue(job_id, dataclasses.replace(queued, on_done=None), delay=faults.delay)
            if faults.delay:
                self.faults.injected["delay"] += 1
            self._queue(job_id, queued, delay=faults.delay)

    def _queue(
        self, job_id: str, hook: _Hook, *, delay: float = 0.0, attempts: int = WEBHOOK_ATTEMPTS
    ) -> None:
        previous = self._tails.get(job_id)
        task = asyncio.create_task(
            self._deliver(previous, job_id=job_id, hook=hook, delay=delay, attempts=attempts)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._tails[job_id] = task
        if hook.on_done is not None:
            task.add_done_callback(functools.partial(_report, hook.on_done))

    async def _deliver(
        self,
        previous: asyncio.Task[bool] | None,
        *,
        job_id: str,
        hook: _Hook,
        delay: float,
        attempts: int,
    ) -> bool:
        if previous is not None:
            await asyncio.wait([previous])
        if delay:
            await asyncio.sleep(delay)
        delivered = False
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.step_seconds * (attempt - 1))
            status_code, error = await self._post(hook.url, hook.body, hook.headers)
            sent = SentWebhook(
                job_id=job_id,
                url=hook.url,
                event=hook.event,
                attempt=attempt,
                status_code=status_code,
                error=error,
            )
            self.sent_webhooks.append(sent)
            if sent.delivered:
                delivered = True
                break
        if self._tails.get(job_id) is asyncio.current_task():
            del self._tails[job_id]
        return delivered

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        if self._client is None:
            return None, "simulator not started: await Simulator.start() first"
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        return response.status_code, None

    async def _image(self, request: Request) -> Response:
        name = request.path_params["name"]
        grid = name.endswith("-grid")
        png = image_for(name, size=128 if grid else 64, tiles=2 if grid else 1)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    async def _video(self, request: Request) -> Response:
        return Response(tiny_mp4(request.path_params["name"]), media_type="video/mp4")


def create_standalone_app(
    *,
    seed: int | None = None,
    step_seconds: float = 0.5,
    api_keys: Collection[str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    modal_timeout_steps: int | None = None,
) -> Starlette:
    """The simulator as its own server (`jobhook simulator --port N`), with a lifespan."""
    sim = Simulator(
        seed=seed,
        step_seconds=step_seconds,
        api_keys=api_keys,
        transport=transport,
        modal_timeout_steps=modal_timeout_steps,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sim:
            yield

    app = Starlette(routes=[Mount("/", app=sim.app)], lifespan=lifespan)
    app.state.simulator = sim
    return app


def _report(on_done: Callable[[bool], None], task: asyncio.Task[bool]) -> None:
    # A cancelled sender (aclose) reports nothing: the job is going away with it.
    if not task.cancelled() and task.exception() is None:
        on_done(task.result())


def tiny_mp4(name: str) -> bytes:
    """A few bytes that start like an MP4 (an `ftyp` box), distinct per name."""
    ftyp = b"ftypisom\x00\x00\x02\x00isomiso2mp41"
    free = b"free" + name.encode()[:64]
    return b"".join((4 + len(box)).to_bytes(4, "big") + box for box in (ftyp, free))
