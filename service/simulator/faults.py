"""Fault injection shared by every simulated provider: API faults (429 with Retry-After, 503,
hangs) taken by the next matching requests, and callback faults per job or for all jobs.

API faults are counters: `faults.rate_limit = 2` answers the next two provider requests with
429. Callback faults come from prompt markers (`[dup]`, `[reorder]`, `[delay=S]`, `[drop]`,
`[malformed]`) or from `faults.callbacks` (the same names, e.g. `{"dup", "delay=0.5"}`).

Where a provider's docs allow two readings, a switch picks the other one (APIMart, also by
prompt marker): `modal_new_id` (`[newid]`) answers the modal call with a new task id, as seed
000's example does; `modal_by_poll` (`[pollmodal]`) answers an inpaint (or a CustomZoom)
`submitted` and lets it reach MODAL a moment later, seen only by polling. `missing_paths`
answers GETs under those paths 404, as if the route did not exist (a task query shape that a
deployment does not serve).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from service.simulator.app import Simulator

#: Checked in this order; one request takes at most one fault.
API_FAULTS: Final = ("rate_limit", "errors", "hang")
CALLBACK_FAULTS: Final = ("dup", "reorder", "delay", "drop", "malformed")
#: Media and the control route are never faulted: they are not a provider's API.
EXEMPT_PREFIXES: Final = ("/images/", "/videos/", "/_faults")
#: What a `[malformed]` job sends before its first real callback.
MALFORMED_BODY: Final = b"<html><body>502 Bad Gateway</body></html>"
_MARKER_RE: Final = re.compile(r"\[(dup|reorder|drop|malformed|delay=\d+(?:\.\d+)?)\]")
_SETTINGS: Final = frozenset(
    {
        "rate_limit",
        "errors",
        "hang",
        "hang_seconds",
        "retry_after",
        "path_prefix",
        "callbacks",
        "query_delay",
        "modal_new_id",
        "modal_by_poll",
        "missing_paths",
        "concurrency",
    }
)
#: The routes that create a job at each simulated provider (each takes one of its slots).
SUBMIT_ROUTES: Final = {
    "/v2/images/generate": "apiframe",
    "/v2/images/midjourney/action": "apiframe",
    "/v1/midjourney/generations": "apimart",
    "/v1/midjourney/generations/{action}": "apimart",
    "/model/v1/generation": "vtrix",
}
FAMILIES: Final = ("apiframe", "apimart", "vtrix")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackFaults:
    """How one job's callbacks misbehave."""

    dup: bool = False  #: every callback is sent twice
    reorder: bool = False  #: progress callbacks are held back until after the terminal one
    drop: bool = False  #: no callbacks at all
    malformed: bool = False  #: one non-JSON body goes out before the first real callback
    delay: float = 0.0  #: seconds each callback waits before it is sent

    @classmethod
    def parse(cls, names: Iterable[str]) -> CallbackFaults:
        """From names such as `dup` or `delay=0.5`; raises ValueError for anything else."""
        flags: dict[str, Any] = {}
        for name in names:
            kind, _, value = name.strip().partition("=")
            if kind == "delay":
                try:
                    seconds = float(value)
                except ValueError:
                    raise ValueError(f"delay needs seconds, as delay=0.5, not {name!r}") from None
                if not math.isfinite(seconds) or seconds < 0:
                    raise ValueError(f"delay must be a non-negative number, not {name!r}")
                flags["delay"] = max(seconds, flags.get("delay", 0.0))
            elif kind in CALLBACK_FAULTS and not value:
                flags[kind] = True
            else:
                raise ValueError(f"unknown callback fault {name!r}; expected {CALLBACK_FAULTS}")
        return cls(**flags)

    @property
    def names(self) -> list[str]:
        flags = [name for name in ("dup", "reorder", "drop", "malformed") if getattr(self, name)]
        return [*flags, f"delay={self.delay:g}"] if self.delay else flags


NO_FAULTS: Final = CallbackFaults()


class Faults:
    """The simulator's fault switchboard; `injected` counts every fault actually applied."""

    def __init__(self) -> None:
        self.rate_limit = 0
        self.errors = 0
        self.hang = 0
        self.hang_seconds = 30.0
        self.retry_after = 1.0
        #: API faults hit only requests whose path (inside the simulator) starts with this.
        self.path_prefix: str | None = None
        #: Callback faults for every job created from now on: `{"dup", "delay=0.5"}`.
        self.callbacks: set[str] = set()
        self.injected: Counter[str] = Counter()
        #: seconds every GET of a provider route takes (widens the window `overlaps` watches)
        self.query_delay = 0.0
        #: APIMart's modal call answers with a new task id (seed 000's example), for every task
        self.modal_new_id = False
        #: APIMart's inpaint / CustomZoom answers `submitted` and reaches MODAL only later
        self.modal_by_poll = False
        #: path prefixes (inside the simulator) whose GETs are answered 404, as if no such
        #: route existed
        self.missing_paths: tuple[str, ...] = ()
        #: GETs of one path (one job) that arrived while another GET of it was being answered:
        #: two clients polling one task at once. A cluster's workers should never do that.
        self.overlaps = 0
        self._reading: Counter[str] = Counter()
        #: jobs one account may run at once per simulated provider (apiframe, apimart, vtrix),
        #: where set: a submission past it is answered 429, as the real providers do
        self.concurrency: dict[str, int] = {}
        #: the most jobs each simulated provider ever ran at once (what a test checks)
        self.peak_running: Counter[str] = Counter()
        #: submissions let through and not yet answered, per provider
        self.admitting: Counter[str] = Counter()

    def take(self, path: str) -> str | None:
        """The API fault the request to `path` gets, if any; consumes it."""
        if path.startswith(EXEMPT_PREFIXES):
            return None
        if self.path_prefix and not path.startswith(self.path_prefix):
            return None
        for kind in API_FAULTS:
            left: int = getattr(self, kind)
            if left > 0:
                setattr(self, kind, left - 1)
                self.injected[kind] += 1
                return kind
        return None

    def for_prompt(self, prompt: str | None) -> CallbackFaults:
        """A new job's callback faults: its prompt's markers plus the global `callbacks`."""
        markers = _MARKER_RE.findall(prompt or "")
        return CallbackFaults.parse([*markers, *self.callbacks])

    def configure(self, settings: Mapping[str, Any]) -> None:
        """Apply `POST /_faults` settings; raises ValueError naming the first bad one."""
        for name in settings:
            if name not in _SETTINGS:
                raise ValueError(f"unknown setting {name!r}; expected {sorted(_SETTINGS)}")
        changes: dict[str, Any] = {}
        for name in API_FAULTS:
            if name in settings:
                value = settings[name]
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{name} must be a whole number >= 0")
                changes[name] = value
        for name in ("hang_seconds", "retry_after", "query_delay"):
            if name in settings:
                value = settings[name]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise ValueError(f"{name} must be a number of seconds >= 0")
                changes[name] = float(value)
        if "path_prefix" in settings:
            prefix = settings["path_prefix"]
            if prefix is not None and not (isinstance(prefix, str) and prefix.startswith("/")):
                raise ValueError("path_prefix must be null or a path starting with /")
            changes["path_prefix"] = prefix or None
        for name in ("modal_new_id", "modal_by_poll"):
            if name in settings:
                if not isinstance(settings[name], bool):
                    raise ValueError(f"{name} must be true or false")
                changes[name] = settings[name]
        if "missing_paths" in settings:
            paths = settings["missing_paths"]
            if not isinstance(paths, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in paths
            ):
                raise ValueError("missing_paths must be a list of paths starting with /")
            changes["missing_paths"] = tuple(paths)
        if "concurrency" in settings:
            caps = settings["concurrency"]
            if isinstance(caps, int) and not isinstance(caps, bool):
                caps = dict.fromkeys(FAMILIES, caps)
            if not isinstance(caps, dict) or not all(
                name in FAMILIES and isinstance(n, int) and not isinstance(n, bool) and n >= 0
                for name, n in caps.items()
            ):
                raise ValueError(
                    "concurrency must be a whole number, or {provider: number} for "
                    f"{', '.join(FAMILIES)} (0: no cap)"
                )
            changes["concurrency"] = {name: n for name, n in caps.items() if n}
        if "callbacks" in settings:
            names = settings["callbacks"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError("callbacks must be a list of names")
            CallbackFaults.parse(names)
            changes["callbacks"] = set(names)
        for name, value in changes.items():
            setattr(self, name, value)

    def snapshot(self) -> dict[str, Any]:
        return {
            "rate_limit": self.rate_limit,
            "errors": self.errors,
            "hang": self.hang,
            "hang_seconds": self.hang_seconds,
            "retry_after": self.retry_after,
            "path_prefix": self.path_prefix,
            "callbacks": sorted(self.callbacks),
            "injected": dict(self.injected),
            "query_delay": self.query_delay,
            "overlaps": self.overlaps,
            "modal_new_id": self.modal_new_id,
            "modal_by_poll": self.modal_by_poll,
            "missing_paths": list(self.missing_paths),
        }


class FaultGate:
    """Pure ASGI: counts requests per route (`"GET /v2/jobs/{id}"`) so tests can see how hard a
    client polled, and answers the provider routes' injected faults before they run."""

    def __init__(self, app: ASGIApp, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The router's own choice, made early: a fault is answered before any route runs.
        route, full = _route(self.sim.app.router.routes, scope)
        template = getattr(route, "path", None)
        self.sim.request_counts[f"{scope['method']} {template or 'unmatched'}"] += 1
        faults = self.sim.faults
        missing = faults.missing_paths and scope["method"] == "GET"
        if full and missing and _inner_path(scope).startswith(faults.missing_paths):
            faults.injected["missing_path"] += 1
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
            return
        family = SUBMIT_ROUTES.get(template or "") if scope["method"] == "POST" else None
        cap = faults.concurrency.get(family) if full and family else None
        if family is not None and cap is not None:
            await self._capped(family, cap, scope, receive, send)
            return
        kind = faults.take(_inner_path(scope)) if full else None
        if kind == "rate_limit":
            retry_after = f"{faults.retry_after:g}"
            body = {"code": 429, "msg": "rate limit exceeded", "error": "Too many requests"}
            response: Response = JSONResponse(
                body, status_code=429, headers={"Retry-After": retry_after}
            )
            await response(scope, receive, send)
            return
        if kind == "errors":
            body = {"code": 503, "msg": "service unavailable", "error": "Service unavailable"}
            await JSONResponse(body, status_code=503)(scope, receive, send)
            return
        if kind == "hang":
            # The client is meant to time out first; if it does not, it gets a real answer.
            await asyncio.sleep(faults.hang_seconds)
        path = _inner_path(scope)
        if scope["method"] != "GET" or not full or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        if faults._reading[path]:
            faults.overlaps += 1
        faults._reading[path] += 1
        try:
            if faults.query_delay:
                await asyncio.sleep(faults.query_delay)
            await self.app(scope, receive, send)
        finally:
            faults._reading[path] -= 1
            if not faults._reading[path]:
                del faults._reading[path]

    async def _capped(
        self, family: str, cap: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A submission to a provider with a concurrency cap: 429 once `cap` jobs run (or are
        being admitted), else on to the route (other faults are not applied to it)."""
        faults = self.sim.faults
        if self.sim.running(family) + faults.admitting[family] >= cap:
            faults.injected["concurrency"] += 1
            body = {
                "code": 429,
                "msg": f"concurrency limit: {cap} jobs running",
                "error": "Too many requests",
            }
            await JSONResponse(body, status_code=429, headers={"Retry-After": "1"})(
                scope, receive, send
            )
            return
        faults.admitting[family] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            faults.admitting[family] -= 1
            running = self.sim.running(family)
            faults.peak_running[family] = max(faults.peak_running[family], running)


def control_routes(sim: Simulator) -> list[Route]:
    """`GET /_faults` shows the switchboard; `POST /_faults {...}` changes it."""

    async def show(request: Request) -> Response:
        if not _allowed(sim, request):
            return JSONResponse({"error": "invalid API key"}, status_code=401)
        return JSONResponse(sim.faults.snapshot())

    async def change(request: Request) -> Response:
        if not _allowed(sim, request):
            return JSONResponse({"error": "invalid API key"}, status_code=401)
        try:
            settings = json.loads(await request.body())
            if not isinstance(settings, dict):
                raise ValueError("expected a JSON object")
            sim.faults.configure(settings)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sim.faults.snapshot())

    return [Route("/_faults", show, methods=["GET"]), Route("/_faults", change, methods=["POST"])]


def _allowed(sim: Simulator, request: Request) -> bool:
    # Open on a keyless simulator (`jobhook simulator`) and in jobhook's dev mode; else any
    # provider key of this one (`jobhook simulator-key` prints the embedded one's).
    if sim.api_keys is None or sim.open_controls:
        return True
    bearer = request.headers.get("authorization", "")
    key = bearer[7:] if bearer[:7].lower() == "bearer " else request.headers.get("x-api-key")
    return sim.authorized(key)


def _route(routes: Iterable[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, bool]:
    """The route the router will pick (a method mismatch is a partial match: a 405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route, True
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial, False


def _inner_path(scope: Scope) -> str:
    """The path inside the simulator app, without the prefix it is mounted at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
