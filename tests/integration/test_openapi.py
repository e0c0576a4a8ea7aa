"""/openapi.json describes every route the app serves, and /docs renders it."""

from __future__ import annotations

import httpx
from starlette.routing import Mount, Route

from service.web.openapi import spec

UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/docs.js"}


def test_every_api_route_is_in_the_spec(client: httpx.AsyncClient) -> None:
    paths = spec()["paths"]
    served = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        if route.path.startswith(("/v1/", "/healthz", "/readyz", "/metrics")):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method.lower()))
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert served == documented


def test_every_reference_resolves() -> None:
    document = spec()
    names = set(document["components"]["schemas"])

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.removeprefix("#/components/schemas/") in names, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


async def test_served_and_rendered(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"] == "3.1.0"
    page = await client.get("/docs")
    assert page.status_code == 200 and "/docs/docs.js" in page.text
    assert "content-security-policy" in page.headers
    script = await client.get("/docs/docs.js")
    assert script.headers["content-type"].startswith("text/javascript")
