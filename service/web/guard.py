"""Hostile-input guards that sit in front of the routes.

- `Guard`, a pure ASGI middleware. In development mode (no JOBHOOK_API_KEYS: no auth, loopback
  clients only) a browser on the same machine is the attack surface, so it refuses
  - a `Host` that is not a loopback name (DNS rebinding: attacker.example resolving to
    127.0.0.1) with 421;
  - state-changing requests (POST, PUT, PATCH, DELETE) a browser sent from another site: an
    `Origin` that is not a loopback origin (`null` included) or `Sec-Fetch-Site: cross-site`
    with 403, and, on the JSON API (`/v1/...`), the body types an HTML form can send without a
    CORS preflight (urlencoded, multipart, text/plain) with 415 (CSRF).
  Provider callbacks and the embedded simulator are servers talking to servers: they are exempt
  from the Origin and Content-Type checks, not from the Host check. In every mode it adds the
  `Retry-After` a handler asked for (`too_many_requests`) to its 429 answer.
- `AuthThrottle`: failed authentications per client address; after `limit` in `window` seconds
  the address is answered 429 until the window has passed.
- `Slots`: concurrent long-lived requests (long-polls and event streams) per owner and in total.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import JobhookError
from service.services import SIMULATOR_PREFIX
from service.web.problems import problem

#: Methods that change something: a cross-site browser request with one of them is refused.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Body types an HTML form (or a no-cors fetch) sends cross-site without a CORS preflight.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: Routes called by servers, not browsers: no Origin / Content-Type checks (the Host check stays).
CALLBACK_PREFIX = "/v1/callbacks/"

#: failed authentications per client address before it is throttled, and over how many seconds
AUTH_FAILURE_LIMIT = 10
AUTH_FAILURE_WINDOW = 60.0
#: client addresses whose failures are remembered (least recently failed forgotten first)
AUTH_TRACKED_ADDRESSES = 10_000

#: concurrent long-polls + event streams per owner, and in all
LONG_LIVED_PER_OWNER = 64
LONG_LIVED_TOTAL = 1000
#: what a client refused a long-lived slot is told to wait before trying again
LONG_LIVED_RETRY_AFTER = 5


class TooManyRequests(JobhookError):
    """Too many requests."""

    status = 429
    slug = "too-many-requests"


def too_many_requests(request: Request, detail: str, retry_after: float) -> TooManyRequests:
    """A 429 to raise; `Guard` sends it with `Retry-After: <retry_after>` (whole seconds)."""
    seconds = max(1, math.ceil(retry_after))
    request.state.retry_after = seconds
    return TooManyRequests(detail, retry_after=seconds)


# ---- host names -------------------------------------------------------------------------------


def host_name(authority: str) -> str | None:
    """The host name of a `Host` header or an origin's authority (`host[:port]`, `[v6][:port]`),
    lower-cased, without a trailing dot; None when it is not well formed."""
    value = authority.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
    else:
        name, sep, port = value.partition(":")
        rest = sep + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    name = name.removesuffix(".")
    return name or None


def is_loopback_name(name: str) -> bool:
    """localhost, *.localhost (browsers resolve those to loopback themselves), 127.0.0.0/8, ::1."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# ---- the middleware ---------------------------------------------------------------------------


class Guard:
    """Pure ASGI middleware; see the module's docstring.

    `dev_mode`: the development-mode checks run. `test_host`: one more host name taken as local,
    the in-process test transport's (`create_app(in_process=True)` only). `callback_host`: the
    public URL's host, accepted on the callback route only (a tunnel to a local jobhook), never
    for the API.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        dev_mode: bool,
        test_host: str | None = None,
        callback_host: str | None = None,
    ) -> None:
        self.app = app
        self.dev_mode = dev_mode
        self.test_host = host_name(test_host) if test_host else None
        self.callback_host = host_name(callback_host) if callback_host else None

    def _local(self, name: str | None) -> bool:
        return name is not None and (is_loopback_name(name) or name == self.test_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; jobhook has no websocket routes
            await self.app(scope, receive, send)
            return
        if self.dev_mode:
            refusal = self._refusal(scope)
            if refusal is not None:
                status, title, detail, slug = refusal
                await problem(status, title, detail, slug=slug)(scope, receive, send)
                return
        # Handlers ask for a Retry-After through request.state (see too_many_requests).
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429:
                seconds = state.get("retry_after")
                headers = list(message.get("headers", []))
                if seconds is not None and not any(k.lower() == b"retry-after" for k, _ in headers):
                    message["headers"] = [*headers, (b"retry-after", str(seconds).encode())]
            await send(message)

        await self.app(scope, receive, send_with_retry_after)

    def _refusal(self, scope: Scope) -> tuple[int, str, str, str] | None:
        path: str = scope["path"]
        server_route = path.startswith(CALLBACK_PREFIX) or (
            path == SIMULATOR_PREFIX or path.startswith(SIMULATOR_PREFIX + "/")
        )
        hosts: list[str] = []
        origins: list[str] = []
        fetch_sites: list[str] = []
        content_types: list[str] = []
        for key, value in scope["headers"]:
            if key == b"host":
                hosts.append(value.decode("latin-1"))
            elif key == b"origin":
                origins.append(value.decode("latin-1"))
            elif key == b"sec-fetch-site":
                fetch_sites.append(value.decode("latin-1").strip().lower())
            elif key == b"content-type":
                content_types.append(value.decode("latin-1"))
        names = [host_name(h) for h in hosts]
        if len(names) != 1 or not (
            self._local(names[0])
            or (path.startswith(CALLBACK_PREFIX) and names[0] == self.callback_host)
        ):
            shown = hosts[0][:100] if hosts else "none"
            return (
                421,
                "Misdirected request",
                f"jobhook has no API keys configured and answers only loopback host names "
                f"(localhost, 127.0.0.1, [::1]), not Host: {shown}",
                "misdirected-request",
            )
        if scope["method"] not in UNSAFE_METHODS or server_route:
            return None
        for origin in origins:
            if not self._local_origin(origin):
                return (
                    403,
                    "Forbidden",
                    f"a request from another site (Origin: {origin[:100]}) may not change anything",
                    "cross-site-request",
                )
        if "cross-site" in fetch_sites:
            return (
                403,
                "Forbidden",
                "a request from another site (Sec-Fetch-Site: cross-site) may not change anything",
                "cross-site-request",
            )
        if path.startswith("/v1/"):
            for content_type in content_types:
                media = content_type.split(";")[0].strip().lower()
                if media in FORM_TYPES:
                    return (
                        415,
                        "Unsupported media type",
                        f"the JSON API takes no {media} bodies; send application/json (or no body)",
                        "unsupported-media-type",
                    )
        return None

    def _local_origin(self, origin: str) -> bool:
        """A loopback origin (`http://127.0.0.1:8000`); `null` (a sandboxed or file page, a
        redirect across sites) is not."""
        try:
            parts = urlsplit(origin.strip())
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or parts.path or parts.query:
            return False
        return self._local(host_name(parts.netloc))


# ---- failed authentications -------------------------------------------------------------------


def _address_key(address: str) -> str:
    """IPv6 clients are counted per /64: one host usually holds a whole /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class AuthThrottle:
    """Failed authentications per client address, in memory (per process).

    Each tracked address keeps the times of its last `limit` failures; while the oldest of
    them is less than `window` seconds old the address is throttled. At most `max_addresses`
    are tracked (the least recently failing is forgotten first), so memory is bounded.
    """

    def __init__(
        self,
        *,
        limit: int = AUTH_FAILURE_LIMIT,
        window: float = AUTH_FAILURE_WINDOW,
        max_addresses: int = AUTH_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it is not throttled."""
        failures = self._failures.get(_address_key(address))
        if failures is None or len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self._clock())

    def failed(self, address: str) -> None:
        key = _address_key(address)
        now = self._clock()
        failures = self._failures.pop(key, None)
        if failures is None:
            failures = deque(maxlen=self.limit)
        while failures and failures[0] + self.window <= now:
            failures.popleft()
        failures.append(now)
        self._failures[key] = failures  # most recent last
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    @property
    def tracked(self) -> int:
        return len(self._failures)


def auth_throttle(request: Request) -> AuthThrottle:
    """The app's throttle, made on first use."""
    state = request.app.state
    throttle: AuthThrottle | None = getattr(state, "auth_throttle", None)
    if throttle is None:
        throttle = state.auth_throttle = AuthThrottle()
    return throttle


# ---- long-lived requests ----------------------------------------------------------------------


class Slots:
    """Concurrent long-lived requests (long-polls, event streams) per owner and in all."""

    def __init__(
        self, *, per_owner: int = LONG_LIVED_PER_OWNER, total: int = LONG_LIVED_TOTAL
    ) -> None:
        self.per_owner = per_owner
        self.total = total
        self._held: dict[str, int] = {}
        self._count = 0

    def acquire(self, owner: str) -> bool:
        if self._count >= self.total or self._held.get(owner, 0) >= self.per_owner:
            return False
        self._held[owner] = self._held.get(owner, 0) + 1
        self._count += 1
        return True

    def release(self, owner: str) -> None:
        held = self._held.get(owner, 0)
        if held <= 0:
            return
        self._count -= 1
        if held == 1:
            del self._held[owner]
        else:
            self._held[owner] = held - 1

    @property
    def in_use(self) -> int:
        return self._count

    def held(self, owner: str) -> int:
        return self._held.get(owner, 0)


def long_lived_slots(request: Request) -> Slots:
    """The app's slots for long-polls and event streams, made on first use."""
    state = request.app.state
    slots: Slots | None = getattr(state, "long_lived", None)
    if slots is None:
        slots = state.long_lived = Slots()
    return slots


def take_slot(request: Request, owner: str, what: str) -> Callable[[], None]:
    """Hold one of `owner`'s long-lived slots, or raise 429; returns the (idempotent) release."""
    slots = long_lived_slots(request)
    if not slots.acquire(owner):
        raise too_many_requests(
            request,
            f"too many {what} open (at most {slots.per_owner} per client and "
            f"{slots.total} in all); close one or try again later",
            LONG_LIVED_RETRY_AFTER,
        )
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            slots.release(owner)

    return release


@contextmanager
def slot(request: Request, owner: str, what: str) -> Iterator[None]:
    """`take_slot` for the length of a `with` block."""
    release = take_slot(request, owner, what)
    try:
        yield
    finally:
        release()
