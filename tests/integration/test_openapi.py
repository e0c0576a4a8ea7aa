"""/openapi.json describes every route the app serves, as the running instance serves it, and
/docs renders it. (tests/e2e/test_schemathesis.py fuzzes the service against it.)"""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from starlette.routing import Mount, Route

from service.config import Settings
from service.providers import build_providers
from service.web.openapi import spec
from service.web.tasks import PROVIDER_NAMES
from tests.integration.test_api_tasks import FOX, assert_problem, submit

DOCUMENTED_PREFIXES = ("/v1/", "/mj/", "/healthz", "/readyz", "/metrics", "/openapi.json")


def test_every_api_route_is_in_the_spec(client: httpx.AsyncClient) -> None:
    paths = spec()["paths"]
    served = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        if route.path.startswith(DOCUMENTED_PREFIXES):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method.lower()))
    documented = {(p, m) for p, ops in paths.items() for m in ops}
    assert served == documented


def test_every_reference_resolves() -> None:
    document = spec()
    names = set(document["components"]["schemas"])
    links = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.removeprefix("#/components/schemas/") in names, ref
            if "operationId" in node and "parameters" in node and "summary" not in node:
                links.add(node["operationId"])  # a link's target
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    operations = {op["operationId"] for ops in document["paths"].values() for op in ops.values()}
    assert links and links <= operations


def test_every_operation_says_how_it_fails() -> None:
    for path, ops in spec()["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            assert "421" in codes, (method, path)  # development mode's Host check
            if op.get("security") != []:
                assert {"401", "403", "429"} <= codes, (method, path)
            for code, answer in op["responses"].items():
                if code[0] in "45" and code != "503":
                    assert "application/problem+json" in answer["content"], (method, path, code)


def test_the_provider_names_are_those_jobhook_can_enable(settings: Settings) -> None:
    every = dataclasses.replace(
        settings,
        simulator=True,
        provider_keys={"apimart": "k-apimart", "apiframe": "k-apiframe", "vtrix": "k-vtrix"},
    )
    providers = build_providers(every, simulator_url="http://127.0.0.1:8000/_sim")
    assert set(providers) == set(PROVIDER_NAMES)


@pytest.mark.parametrize(
    ("dev_mode", "metrics_token", "security", "metrics_security"),
    [
        (True, False, None, []),
        (False, False, [{"bearer": []}], []),
        (False, True, [{"bearer": []}], [{"metrics": []}]),
    ],
)
def test_the_security_is_the_instances(
    dev_mode: bool,
    metrics_token: bool,
    security: object,
    metrics_security: object,
) -> None:
    document = spec(dev_mode=dev_mode, metrics_token=metrics_token)
    assert document.get("security") == security
    assert document["paths"]["/metrics"]["get"]["security"] == metrics_security
    assert document["paths"]["/healthz"]["get"]["security"] == []


async def test_served_and_rendered(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"] == "3.1.0"
    assert "security" not in r.json()  # this instance has no API keys
    page = await client.get("/docs")
    assert page.status_code == 200 and "/docs/docs.js" in page.text
    assert "content-security-policy" in page.headers
    script = await client.get("/docs/docs.js")
    assert script.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/tasks", "GET, HEAD, POST"),  # two routes, one path
        ("DELETE", "/v1/tasks/task_x", "GET, HEAD"),
        ("GET", "/v1/tasks/task_x/cancel", "POST"),
        ("PATCH", "/v1/endpoints/ep_x", "DELETE, GET, HEAD"),
        ("TRACE", "/healthz", "GET, HEAD"),
        ("OPTIONS", "/v1/callbacks/simulator/junk", "POST"),
    ],
)
async def test_a_405_says_which_methods_the_path_takes(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    r = await client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("created_before", ""),
        ("created_after", "yesterday"),
        ("created_after", "2026-01-01"),
        ("created_after", "2026-01-01T10:00Z"),  # no seconds
        ("created_after", "2026-01-01 10:00:00Z"),  # RFC 3339 wants the T
        ("created_after", "2026-01-01T10:00:00"),  # no offset
        ("created_after", "20260101T100000Z"),  # ISO 8601's basic format is not RFC 3339's
        ("created_after", "2026-01-01T10:00:00+24:00"),
        ("created_after", "9999-12-31T23:59:59-23:59"),  # past year 9999 in UTC
        ("created_after", "٢٠٢٦-01-01T10:00:00Z"),  # digits, but not ASCII ones
        ("status", ""),
        ("status", "SUCCESS,,FAILURE"),
        ("provider", "midjourney"),
        ("provider", ""),
        ("action", "paint"),
    ],
)
async def test_the_task_list_refuses_what_its_schema_forbids(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    assert_problem(await client.get("/v1/tasks", params={name: value}), 422, name)


async def test_the_task_list_takes_what_its_schema_allows(client: httpx.AsyncClient) -> None:
    task = await submit(client, FOX)
    for params in (
        {"created_after": "2000-01-01T00:00:00Z", "created_before": "2999-12-31t23:59:59.5z"},
        {"created_after": "2000-01-01T01:30:00+01:30", "provider": "simulator"},
        {"status": "SUBMITTED,IN_PROGRESS,SUCCESS", "action": "imagine"},
    ):
        r = await client.get("/v1/tasks", params=params)
        assert r.status_code == 200, (params, r.text)
        assert task["id"] in [t["id"] for t in r.json()["data"]], params
