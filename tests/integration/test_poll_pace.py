"""The provider's request rate is real, shared and visible: a submission that would wait too
long for it is refused with a Retry-After (never sent), and a poller that cannot keep the pace
says so: how late each poll ran in /metrics, a `poll.behind` line naming the limit, and a
warning in /readyz once the oldest due poll has waited too long (still ready)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.web import ops
from service.workers import poller
from tests.conftest import open_app
from tests.integration.test_api_tasks import submit
from tests.integration.test_ops import samples


async def test_a_submission_over_the_providers_rate_is_queued(settings: Settings) -> None:
    """Issue 13: a submission the provider's rate cannot take now waits in the submission queue
    (202 NOT_START, queued) and is sent when the rate allows, never refused."""
    slow = replace(settings, provider_rates={"simulator": 0.05})
    async for client in open_app(slow):
        sim = client.app.state.services.providers["simulator"]  # type: ignore[attr-defined]
        await submit(client, {"action": "imagine", "params": {"prompt": "one"}})
        r = await client.post("/v1/tasks", json={"action": "imagine", "params": {"prompt": "two"}})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "NOT_START" and r.json()["queued"] is True
        metrics = samples((await client.get("/metrics")).text)
        assert metrics['jobhook_provider_rate_limit{provider="simulator"}'] == 0.05
        assert metrics['jobhook_provider_rate_limit{provider="simulator-apimart"}'] >= 1000
        assert sim.name == "simulator"


async def test_a_poller_held_back_by_the_rate_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # APIMart's simulator moves a step each 0.1 s and its tasks are polled at that pace, but
    # jobhook may ask it only twice a second: polls run later and later.
    monkeypatch.setattr(poller, "BEHIND_EVERY", 0.5)
    slow = replace(settings, simulator_step=0.1, provider_rates={"simulator-apimart": 2.0})
    with capture_logs() as logs:
        async for client in open_app(slow):
            for n in range(6):
                await submit(
                    client,
                    {"provider": "simulator-apimart", "action": "imagine",
                     "params": {"prompt": f"slow {n} [never]"}},
                )  # fmt: skip
            for _ in range(100):
                await asyncio.sleep(0.1)
                if any(e["event"] == "poll.behind" for e in logs):
                    break
            metrics = samples((await client.get("/metrics")).text)
            assert metrics["jobhook_poll_lag_seconds_count"] >= 2
            assert (
                metrics['jobhook_poll_lag_seconds_bucket{le="0.1"}']
                < (metrics["jobhook_poll_lag_seconds_count"])
            )
            waited = 'jobhook_provider_rate_waited_seconds_total{provider="simulator-apimart"}'
            assert metrics[waited] > 0
    behind = [e for e in logs if e["event"] == "poll.behind"]
    assert behind, [e["event"] for e in logs]
    assert behind[-1]["limit"].startswith("rate: simulator-apimart at 2 requests/s")
    assert behind[-1]["late"] >= 1 and behind[-1]["worst_seconds"] > 1.0


async def test_readyz_reports_how_far_behind_the_poller_is(client: httpx.AsyncClient) -> None:
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["poll_behind_seconds"] == 0
    assert ready["warnings"] == []


async def test_a_poller_behind_is_a_warning_in_readyz_not_unready(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider asked for a pause (Retry-After): its due polls wait in the store, and the
    # oldest one's wait grows. /readyz says so, and stays ready: the API still serves.
    monkeypatch.setattr(ops, "POLL_BEHIND_LIMIT", 1.0)
    async for client in open_app(replace(settings, simulator_step=0.1)):
        await submit(
            client,
            {"provider": "simulator-apimart", "action": "imagine",
             "params": {"prompt": "held [never]"}},
        )  # fmt: skip
        svc = client.app.state.services  # type: ignore[attr-defined]
        svc.rates.bucket("simulator-apimart").hold(60)
        ready: dict[str, object] = {}
        for _ in range(50):
            await asyncio.sleep(0.1)
            r = await client.get("/readyz")
            assert r.status_code == 200, r.text
            ready = r.json()
            if ready["warnings"]:
                break
        assert "the poller is behind" in str(ready["warnings"]), ready
        assert float(ready["poll_behind_seconds"]) >= 1.0  # type: ignore[arg-type]
        metrics = samples((await client.get("/metrics")).text)
        assert metrics["jobhook_poll_behind_seconds"] >= 1.0


async def test_a_claim_whose_lease_runs_out_waiting_for_the_rate_is_left_alone(
    settings: Settings,
) -> None:
    # One poll a second, a lease of 1.2 s with 0.5 s kept for the request: of the tasks
    # claimed at once, those whose turn comes after 0.7 s are not polled under a lease that
    # may have run out (another worker may hold the task by then); they are claimed again.
    slow = replace(settings, simulator_step=0.1, provider_rates={"simulator-apimart": 1.0})
    with capture_logs() as logs:
        async for client in open_app(slow, poller=poller.PollerConfig(lease=1.2, timeout=0.5)):
            for n in range(4):
                await submit(
                    client,
                    {"provider": "simulator-apimart", "action": "imagine",
                     "params": {"prompt": f"lease {n} [never]"}},
                )  # fmt: skip
            for _ in range(60):
                await asyncio.sleep(0.1)
                if any(e.get("result") == "lease_spent" for e in logs):
                    break
            metrics = samples((await client.get("/metrics")).text)
    spent = [e for e in logs if e.get("result") == "lease_spent"]
    assert spent and all(e["waited"] > 0.7 for e in spent)
    assert metrics['jobhook_polls_total{provider="simulator-apimart",result="lease_spent"}'] >= 1
