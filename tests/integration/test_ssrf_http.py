"""guarded_request against a real HTTP receiver on 127.0.0.1 (uvicorn in a background thread)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_network

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from service.security.ssrf import OutboundGuard, UnsafeURL, guarded_request

LOOPBACK = (ip_network("127.0.0.0/8"),)


@dataclass
class Receiver:
    port: int
    #: (path, headers) of every request the receiver saw, in order
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.seen]


def receiver_app(receiver: Receiver) -> Starlette:
    async def record(request: Request) -> None:
        receiver.seen.append((request.url.path, dict(request.headers)))

    async def ok(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("ok")

    async def redirect(request: Request) -> Response:
        await record(request)
        return RedirectResponse(f"http://127.0.0.1:{receiver.port}/target", status_code=302)

    async def big(request: Request) -> Response:
        await record(request)
        return PlainTextResponse("x" * 200_000)

    async def drip(request: Request) -> Response:
        await record(request)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield b"."
                await asyncio.sleep(0.05)

        return StreamingResponse(chunks())

    return Starlette(
        routes=[
            Route("/x", ok, methods=["GET", "POST"]),
            Route("/target", ok),
            Route("/redirect", redirect),
            Route("/big", big),
            Route("/drip", drip),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[Receiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    receiver = Receiver(port=sock.getsockname()[1])
    config = uvicorn.Config(
        receiver_app(receiver), lifespan="off", ws="none", log_level="warning", access_log=False
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    yield receiver
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def receiver(server: Receiver) -> Receiver:
    server.seen.clear()
    return server


async def resolve_hooks_test(host: str, port: int) -> list[str]:
    if host != "hooks.test":
        raise UnsafeURL("the host does not resolve")
    return ["127.0.0.1"]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


OPEN = OutboundGuard(allow=LOOPBACK, resolver=resolve_hooks_test)


async def test_receiver_sees_the_original_host(receiver: Receiver, http: httpx.AsyncClient) -> None:
    url = f"http://hooks.test:{receiver.port}/x?a=1"
    response = await guarded_request(
        http, OPEN, "POST", url, content=b"{}", headers={"Host": "evil.test", "X-Test": "1"}
    )
    assert (response.status_code, response.body, response.truncated) == (200, b"ok", False)
    path, headers = receiver.seen[-1]
    assert path == "/x"
    assert headers["host"] == f"hooks.test:{receiver.port}"
    assert headers["x-test"] == "1"


async def test_a_redirect_is_returned_and_never_followed(
    receiver: Receiver, http: httpx.AsyncClient
) -> None:
    url = f"http://hooks.test:{receiver.port}/redirect"
    response = await guarded_request(http, OPEN, "GET", url)
    assert response.status_code == 302
    assert response.headers["location"] == f"http://127.0.0.1:{receiver.port}/target"
    await asyncio.sleep(0.05)
    assert receiver.paths == ["/redirect"]


async def test_a_large_answer_is_truncated(receiver: Receiver, http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{receiver.port}/big"
    response = await guarded_request(http, OPEN, "GET", url, max_response_bytes=1000)
    assert response.status_code == 200
    assert response.body == b"x" * 1000 and response.truncated
    exact = await guarded_request(http, OPEN, "GET", url, max_response_bytes=200_000)
    assert len(exact.body) == 200_000 and not exact.truncated


async def test_without_allow_the_url_is_refused_before_connecting(
    receiver: Receiver, http: httpx.AsyncClient
) -> None:
    closed = OutboundGuard(resolver=resolve_hooks_test)
    for url in (f"http://hooks.test:{receiver.port}/x", f"http://127.0.0.1:{receiver.port}/x"):
        with pytest.raises(UnsafeURL, match=r"127\.0\.0\.1 is a loopback address"):
            await guarded_request(http, closed, "POST", url, content=b"{}")
    assert receiver.seen == []


async def test_environment_proxies_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing listens
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = f"http://hooks.test:{receiver.port}/x"
    async with httpx.AsyncClient(trust_env=True) as trusting:
        # the environment is live: a client that trusts it goes to the bogus proxy
        with pytest.raises(httpx.ConnectError):
            await trusting.get(f"http://127.0.0.1:{receiver.port}/x")
        with pytest.raises(ValueError, match="trust_env=False"):
            await guarded_request(trusting, OPEN, "GET", url)
    assert receiver.seen == []
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await guarded_request(http, OPEN, "GET", url)
    assert response.status_code == 200
    assert receiver.seen == [("/x", receiver.seen[0][1])]
    assert receiver.seen[0][1]["host"] == f"hooks.test:{receiver.port}"


async def test_a_dripping_server_hits_the_overall_timeout(
    receiver: Receiver, http: httpx.AsyncClient
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/drip"
    with pytest.raises(httpx.ReadTimeout):
        await guarded_request(http, OPEN, "GET", url, timeout=0.3)


async def test_a_closed_port_is_an_httpx_error(http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        await guarded_request(http, OPEN, "GET", f"http://hooks.test:{port}/x")
