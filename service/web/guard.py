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
The limits it enforces with handlers (the auth throttle, long-lived request slots) live in
`service/web/limits.py`.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.services import SIMULATOR_PREFIX
from service.web.problems import problem

#: Methods that change something: a cross-site browser request with one of them is refused.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Body types an HTML form (or a no-cors fetch) sends cross-site without a CORS preflight.
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})
#: Routes called by servers, not browsers: no Origin / Content-Type checks (the Host check stays).
CALLBACK_PREFIX = "/v1/callbacks/"


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


@functools.lru_cache(maxsize=256)  # a handful of names in practice; parsed on every request
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
