"""Operator endpoints: health, readiness, and metrics in Prometheus text format."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from service.config import Settings
from service.web import ops
from tests.conftest import open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["backlog"] == 0


async def test_metrics_count_what_happened(client: httpx.AsyncClient) -> None:
    done = await finished(
        client, (await submit(client, {"action": "imagine", "params": {"prompt": "a"}}))["id"]
    )
    await finished(
        client,
        (await submit(client, {"action": "imagine", "params": {"prompt": "b [fail]"}}))["id"],
    )
    await client.post("/v1/callbacks/simulator/forged", content=b"{}")
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got['jobhook_tasks{provider="simulator",status="SUCCESS"}'] == 1
    assert got['jobhook_tasks{provider="simulator",status="FAILURE"}'] == 1
    assert got['jobhook_callbacks_received_total{provider="simulator"}'] >= 8
    assert got['jobhook_callbacks_rejected_total{provider="simulator",reason="bad_token"}'] == 1
    assert got['jobhook_observations_total{source="callback",outcome="applied"}'] >= 8
    assert got["jobhook_ingest_seconds_count"] >= 10
    assert got['jobhook_ingest_seconds_bucket{le="+Inf"}'] == got["jobhook_ingest_seconds_count"]
    assert got["jobhook_oldest_unfinished_task_age_seconds"] == 0
    assert "jobhook_polls_due" in got and "jobhook_deliveries_due" in got
    # Every sample line is well formed (name, optional labels, a number).
    for line in r.text.splitlines():
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [-0-9.e+Inf]+", line)
    assert done["status"] == "SUCCESS"


TOKEN = "metrics-token-0123456789"


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """JOBHOOK_METRICS_TOKEN set (and client keys: the counts span every tenant)."""
    keyed = replace(settings, api_keys={"alice-key-123": "alice"}, metrics_token=TOKEN)
    async for c in open_app(keyed):
        yield c


async def test_metrics_need_the_metrics_token(guarded: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer alice-key-123"},  # a client key is not the metrics token
    ):
        r = await guarded.get("/metrics", headers=headers)
        assert_problem(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "jobhook_tasks" not in r.text
    r = await guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and "jobhook_polls_due" in r.text


async def test_readiness_without_the_token_is_only_the_status(
    guarded: httpx.AsyncClient,
) -> None:
    r = await guarded.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    r = await guarded.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    ready = r.json()
    assert ready["status"] == "ready" and ready["backlog"] == 0 and "providers" in ready
    assert (await guarded.get("/healthz")).status_code == 200  # liveness stays open


async def test_not_ready_without_the_token_says_only_that(
    guarded: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "BACKLOG_LIMIT", -1)
    r = await guarded.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "not ready"}
    r = await guarded.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_problem(r, 503)
    assert "overdue" in r.json()["detail"]
