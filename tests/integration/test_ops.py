"""Operator endpoints: health, readiness, and metrics in Prometheus text format."""

from __future__ import annotations

import re

import httpx

from tests.integration.test_api_tasks import finished, submit


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
