"""The outbound guard: every URL jobhook calls or asks a provider to fetch is checked here first.

A URL is resolved once, every address is judged, and the request goes to the checked address.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from service.config import IPNetwork
from service.errors import ValidationFailed
from service.security.urls import BadURL, parse_url

#: host, port -> the IP addresses (as strings) the host resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
FETCH_FIELDS = ("image_urls", "mask_url", "end_url", "url", "image_url")
#: Free text, never judged as a URL even when it starts like one.
_TEXT_FIELDS = frozenset({"prompt", "negative_prompt", "remix_prompt"})

# Only these characters can make up something inet_aton reads as an IPv4 address ("0x7f.1");
# the C function also accepts trailing garbage ("1.2.3.4 x"), which must stay a (bad) name.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")
_HOST_NAME = re.compile(r"[a-z0-9_.-]+")

# Ranges whose name says more than "private" would (documentation ranges stay "private").
_NAMED: tuple[tuple[IPNetwork, str], ...] = (
    (ip_network("0.0.0.0/8"), 'a "this network" address'),
    (ip_network("100.64.0.0/10"), "a shared (CGNAT) address"),
    (ip_network("198.18.0.0/15"), "a benchmarking address"),
    (ip_network("2001:db8::/32"), "a documentation address"),
    # RFC 8215: the operator picks where the IPv4 address sits, so there is nothing to judge.
    (ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
)
_NAT64 = ip_network("64:ff9b::/96")


class UnsafeURL(Exception):
    """The URL may not be called: it is malformed or leads somewhere private."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, through the C library (no caching of our own)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeURL("the host does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(ip: IPv4Address | IPv6Address, allow: Sequence[IPNetwork] = ()) -> str | None:
    """Why `ip` may not be called, or None if it may. An address inside `allow` always may."""
    if any(ip in network for network in allow):
        return None
    if isinstance(ip, IPv6Address) and (embedded := _embedded_ipv4(ip)):
        form, inner = embedded
        reasons = [reason for v4 in inner if (reason := refusal(v4, allow))]
        return f"{ip} is {form} address and {reasons[0]}" if reasons else None
    kind = _kind(ip)
    return f"{ip} is {kind}" if kind else None


def _embedded_ipv4(ip: IPv6Address) -> tuple[str, list[IPv4Address]] | None:
    # These forms reach an IPv4 host: the IPv4 address decides, whatever the wrapper looks like.
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped", [ip.ipv4_mapped]
    if ip in _NAT64:
        return "a NAT64", [IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return "a 6to4", [ip.sixtofour]
    if ip.teredo is not None:
        return "a Teredo", list(ip.teredo)
    return None


def _kind(ip: IPv4Address | IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    for network, name in _NAMED:
        if ip in network:
            return name
    if ip.is_private:
        return "a private address"
    if isinstance(ip, IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A checked URL: connect to `ip`, speak to `host`."""

    url: str
    scheme: str
    #: as written, lowercased, without brackets
    host: str
    port: int
    #: the checked address to connect to
    ip: str


@dataclass(frozen=True, slots=True)
class OutboundGuard:
    allow: tuple[IPNetwork, ...] = ()
    resolver: Resolver = system_resolver

    async def check(self, url: str) -> Target:
        """The Target to connect to; raises UnsafeURL with the reason it may not be called."""
        try:
            parts = parse_url(url)
        except BadURL as exc:
            raise UnsafeURL(exc.reason) from None
        scheme, host, port = _split(parts)
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = [ip_address(a) for a in await self.resolver(_ascii_host(host), port)]
            except ValueError:
                raise UnsafeURL("the host does not resolve to IP addresses") from None
            if not addresses:
                raise UnsafeURL("the host does not resolve")
        reasons = [reason for address in addresses if (reason := refusal(address, self.allow))]
        if reasons:
            named = f"{host} resolves to an address not allowed ({reasons[0]})"
            raise UnsafeURL(reasons[0] if literal is not None else named)
        return Target(url=url, scheme=scheme, host=host, port=port, ip=str(addresses[0]))


def _split(parts: SplitResult) -> tuple[str, str, int]:
    if parts.scheme not in DEFAULT_PORTS:
        raise UnsafeURL("only http and https URLs are allowed")
    if "@" in parts.netloc:
        raise UnsafeURL("credentials in the URL (user:pass@) are not allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURL("the port is not a number between 1 and 65535") from None
    if port == 0:
        raise UnsafeURL("the port is not a number between 1 and 65535")
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _literal(host: str) -> IPv4Address | IPv6Address | None:
    """The address `host` spells, in any form the C library reads (127.1, 0x7f.1, 2130706433)."""
    with suppress(ValueError):
        return ip_address(host)
    if _NUMERIC_HOST.fullmatch(host):
        with suppress(OSError):
            return IPv4Address(socket.inet_aton(host))
    return None


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire (IDNA), refused if it could smuggle anything else."""
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL("the host name is not valid") from None
    if not _HOST_NAME.fullmatch(ascii_host):
        raise UnsafeURL("the host name is not valid")
    return ascii_host


async def check_fetch_urls(
    guard: OutboundGuard, params: Mapping[str, Any], fields: Sequence[str] = FETCH_FIELDS
) -> None:
    """Check every URL a client asks a provider to fetch; ValidationFailed names the field.

    That is each of `fields`, and any other param (or item of a list param) that is an http(s)
    URL: a provider field added later (APIMart's `cref`, `sref`, `dref` ...) is checked too
    without anyone listing it. Free text (`prompt`) is the provider's to read, not ours.
    """
    for name, value in params.items():
        if name in _TEXT_FIELDS or value is None:
            continue
        items = [(f"params.{name}", value)]
        if isinstance(value, list):
            items = [(f"params.{name}[{i}]", item) for i, item in enumerate(value)]
        for field, item in items:
            if name in fields and not isinstance(item, str):
                raise ValidationFailed(field, "must be a URL")
            if not isinstance(item, str) or item[:5].lower() == "data:":
                continue
            if name in fields or item.strip()[:8].lower().startswith(("http://", "https://")):
                try:
                    await guard.check(item.strip())
                except UnsafeURL as exc:
                    raise ValidationFailed(field, exc.reason) from None


@dataclass(frozen=True, slots=True)
class GuardedResponse:
    status_code: int
    headers: dict[str, str]
    #: at most max_response_bytes, as sent (identity encoding is asked for)
    body: bytes
    #: the server had more to say than max_response_bytes
    truncated: bool


async def guarded_request(
    http: httpx.AsyncClient,
    guard: OutboundGuard,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 15.0,
    max_response_bytes: int = 65536,
) -> GuardedResponse:
    """Check `url`, then send one request to the checked address; never follows a redirect.

    `http` must be built with trust_env=False and no proxy (a proxy would resolve the name
    again). UnsafeURL comes before any connection; network errors are httpx's; a whole request
    slower than `timeout` (a server dripping bytes) is a ReadTimeout.
    """
    if http.trust_env:
        raise ValueError("guarded_request needs an httpx.AsyncClient built with trust_env=False")
    target = await guard.check(url)
    parts = urlsplit(url)
    ip = ip_address(target.ip)
    # An IPv6 literal is the only host with a colon; every other host passed _ascii_host's check.
    host = f"[{target.host}]" if ":" in target.host else _ascii_host(target.host)
    is_name = _literal(target.host) is None
    netloc = f"[{ip}]" if ip.version == 6 else str(ip)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    request_headers = httpx.Headers(headers)
    request_headers.setdefault("Accept-Encoding", "identity")
    port = target.port
    request_headers["Host"] = host if port == DEFAULT_PORTS[target.scheme] else f"{host}:{port}"
    # TLS must name the host, not the address we connect to: SNI and certificate checks.
    extensions = {"sni_hostname": host} if is_name and target.scheme == "https" else {}
    request = http.build_request(
        method,
        f"{target.scheme}://{netloc}:{port}{path}",
        content=content,
        headers=request_headers,
        timeout=timeout,
        extensions=extensions,
    )
    try:
        async with asyncio.timeout(timeout):
            return await _send(http, request, max_response_bytes)
    except TimeoutError:
        raise httpx.ReadTimeout(f"no full answer within {timeout:g} s", request=request) from None


async def _send(http: httpx.AsyncClient, request: httpx.Request, limit: int) -> GuardedResponse:
    response = await http.send(request, stream=True, follow_redirects=False)
    body = bytearray()
    try:
        if response.is_stream_consumed:  # a transport that answered in one piece (MockTransport)
            body += response.content[: limit + 1]
        else:
            # Raw bytes: a compressed body could inflate far past the cap inside one chunk.
            async for chunk in response.aiter_raw():
                body += chunk[: limit + 1 - len(body)]
                if len(body) > limit:
                    break
    finally:
        await response.aclose()
    return GuardedResponse(
        status_code=response.status_code,
        headers=dict(response.headers),
        body=bytes(body[:limit]),
        truncated=len(body) > limit,
    )
