"""Performs a provider's requests over the process's one shared httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import time

import httpx

from service.errors import ProviderUnavailable
from service.logging import log
from service.providers.base import Provider, ProviderRequest, ProviderResponse

#: Provider answers are small JSON documents; anything larger is not what we asked for.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024


async def send(
    http: httpx.AsyncClient,
    provider: Provider,
    request: ProviderRequest,
    *,
    timeout: float = 30.0,
) -> ProviderResponse:
    """Send `request` to `provider`; network trouble becomes ProviderUnavailable."""
    url = getattr(provider, "base_url", "") + request.path
    started = time.perf_counter()
    try:
        # httpx's timeouts are per read; this bounds the whole exchange, a dripping body too.
        async with (
            asyncio.timeout(timeout),
            http.stream(
                request.method,
                url,
                json=request.json,
                headers=dict(request.headers),
                timeout=timeout,
                follow_redirects=False,
            ) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ProviderUnavailable(f"{provider.name} answered with an oversized body")
    except (httpx.TimeoutException, TimeoutError):
        log.warning("provider.request", provider=provider.name, url=url, error="timeout")
        raise ProviderUnavailable(
            f"{provider.name} did not answer within {timeout:g} s ({request.method} {url})"
        ) from None
    except httpx.HTTPError as exc:
        # The URL tried is named: "could not reach" alone leaves the operator guessing which
        # base URL (JOBHOOK_PUBLIC_URL, a provider's) is wrong. It never carries a key.
        log.warning("provider.request", provider=provider.name, url=url, error=type(exc).__name__)
        raise ProviderUnavailable(
            f"could not reach {provider.name} at {url}: {type(exc).__name__}",
            reached=not isinstance(exc, httpx.ConnectError),
        ) from None
    log.debug(
        "provider.request",
        provider=provider.name,
        method=request.method,
        path=request.path,
        status=response.status_code,
        ms=round((time.perf_counter() - started) * 1000, 1),
    )
    return ProviderResponse(
        status_code=response.status_code, headers=dict(response.headers), body=bytes(body)
    )
