"""The operator dashboard: a live task list and a task page (static HTML + vanilla JS over the
JSON API), and a login that turns an API key into a signed session cookie that can only read."""

from __future__ import annotations

import functools
import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BadRequest, Forbidden, Unauthorized
from service.services import Services
from service.web.limits import TooManyRequests
from service.web.requests import (
    SESSION_COOKIE,
    auth_failed,
    authenticate,
    check_auth_throttle,
    owner_for_key,
    read_body,
)

STATIC = Path(__file__).parent / "static"
#: Pages render no data on the server: the scripts fetch it and build nodes with textContent.
CSP = (
    "default-src 'self'; img-src 'self' http: https: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOGIN_BODY_LIMIT = 4096


@functools.cache
def _template(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _page(name: str, status: int = 200, **slots: str) -> Response:
    """A page from static/, its `<!--slot-->` markers replaced by the given (escaped) HTML."""
    text = _template(name)
    for slot, value in slots.items():
        text = text.replace(f"<!--{slot}-->", value)
    return HTMLResponse(text, status, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _signed_in(request: Request) -> bool:
    """A session cookie (or a bearer key) for a configured owner; always, in development mode
    (where `authenticate` still turns away clients that are not on loopback)."""
    try:
        authenticate(request, _services(request).settings.api_keys)
    except (Unauthorized, TooManyRequests):
        return False
    return True


def _error(message: str) -> str:
    return f'<p class="error" role="alert">{html.escape(message)}</p>'


def _logout_form(request: Request) -> str:
    if _services(request).settings.dev_mode:
        return '<span class="muted">development mode</span>'
    return (
        '<form method="post" action="/logout" class="logout">'
        '<button type="submit">Sign out</button></form>'
    )


def _check_origin(request: Request) -> None:
    """A browser names the page a form was posted from: refuse forms posted by other sites, and
    `Origin: null` (a sandboxed frame, a data: or file: page, a redirect across sites). A client
    that is not a browser sends no Origin."""
    host = request.headers.get("host", "").lower()
    for origin in request.headers.getlist("origin"):
        try:
            netloc = urlsplit(origin).netloc.lower()
        except ValueError:  # e.g. an unclosed IPv6 bracket
            netloc = ""
        if origin == "null" or not netloc or netloc != host:
            raise Forbidden("the form was posted from another site")
    if request.headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        raise Forbidden("the form was posted from another site")


async def index(request: Request) -> Response:
    if not _signed_in(request):
        return RedirectResponse("/login", 303)
    return _page("index.html", logout=_logout_form(request))


async def task_page(request: Request) -> Response:
    if not _signed_in(request):
        return RedirectResponse("/login", 303)
    return _page("task.html", logout=_logout_form(request))


def _console_page(name: str) -> Callable[[Request], Awaitable[Response]]:
    """A console page (issue 15): deliveries, one delivery, endpoints. Like the task pages they
    only read with the session cookie; a change (retry, create, rotate...) sends the API key,
    which the page asks for when the cookie is refused."""

    async def page(request: Request) -> Response:
        if not _signed_in(request):
            return RedirectResponse("/login", 303)
        return _page(name, logout=_logout_form(request))

    return page


async def login_form(request: Request) -> Response:
    if _services(request).settings.dev_mode or _signed_in(request):
        return RedirectResponse("/", 303)
    return _page("login.html")


async def login(request: Request) -> Response:
    svc = _services(request)
    if svc.settings.dev_mode:
        return RedirectResponse("/", 303)
    _check_origin(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest("expected a form (application/x-www-form-urlencoded)")
    body = await read_body(request, LOGIN_BODY_LIMIT)
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    owner = owner_for_key(form.get("api_key", [""])[0].strip(), svc.settings.api_keys)
    if owner is None:
        try:  # past too many failures from this address, a wrong key waits; a right one never
            check_auth_throttle(request)
        except TooManyRequests as exc:
            page = _page("login.html", 429, error=_error(exc.detail))
            page.headers["Retry-After"] = str(exc.extra["retry_after"])
            return page
        auth_failed(request, "bad_login")
        return _page("login.html", 401, error=_error("That API key is not valid."))
    response = RedirectResponse("/", 303)
    response.set_cookie(
        SESSION_COOKIE,
        svc.sessions.issue(owner),
        max_age=svc.sessions.max_age,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def logout(request: Request) -> Response:
    _check_origin(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:  # the session ends here, not only in this browser
        _services(request).sessions.revoke(cookie)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


class _Hardened:
    """Pure ASGI: the security headers on every static asset too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_hardened)


routes: list[BaseRoute] = [
    Route("/", index, methods=["GET"]),
    Route("/tasks/{id}", task_page, methods=["GET"]),
    Route("/deliveries", _console_page("deliveries.html"), methods=["GET"]),
    Route("/deliveries/{id}", _console_page("delivery.html"), methods=["GET"]),
    Route("/endpoints", _console_page("endpoints.html"), methods=["GET"]),
    Route("/overview", _console_page("overview.html"), methods=["GET"]),
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Mount("/static", app=_Hardened(StaticFiles(directory=STATIC)), name="static"),
]
