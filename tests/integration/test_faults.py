"""Every fault the simulator injects: the task still ends right, and the provider is not hammered.

Callback faults ride on prompt markers ([dup], [reorder], [delay=S], [drop], [malformed]); API
faults (429 with Retry-After, 503, hangs) are counters on the simulator's `faults`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from service.config import Settings
from service.simulator import Simulator
from service.workers.poller import PollerConfig
from tests.conftest import open_app
from tests.integration.test_api_tasks import finished, submit
from tests.integration.test_callbacks import events_of, services

APIMART = "simulator-apimart"


@pytest.fixture
async def fast(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Callbacks count as quiet after 0.2 s; a poll gives up after 0.3 s; runs end after 1 s."""
    quick = replace(settings, reconcile_after=0.2, run_timeout=1.0)
    async for c in open_app(quick, poller=PollerConfig(timeout=0.3)):
        yield c


def sim(client: httpx.AsyncClient) -> Simulator:
    simulator: Simulator = client.app.state.simulator  # type: ignore[attr-defined]
    return simulator


async def run(
    client: httpx.AsyncClient, prompt: str, provider: str = "simulator"
) -> dict[str, Any]:
    body = {"provider": provider, "action": "imagine", "params": {"prompt": prompt}}
    return await finished(client, (await submit(client, body))["id"])


def outcomes(events: list[dict[str, Any]], source: str = "callback") -> list[str]:
    return [e["outcome"] for e in events if e["source"] == source]


def polls(client: httpx.AsyncClient, prefix: str) -> int:
    return sum(n for route, n in sim(client).request_counts.items() if route.startswith(prefix))


async def test_duplicate_callbacks_are_recorded_once(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "a fox [dup]")
    assert done["status"] == "SUCCESS" and done["progress"] == 100
    for _ in range(200):  # the terminal webhook's twin may still be on its way
        seen = outcomes(await events_of(fast, done["id"]))
        if seen.count("duplicate") >= 4:
            break
        await asyncio.sleep(0.01)
    assert seen.count("applied") == 4 and seen.count("duplicate") == 4
    assert done["sequence"] == 5  # submitted + 3 progress + succeeded, each said once


async def test_reordered_callbacks_end_in_success_not_in_progress(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "a fox [reorder]")
    task = (await fast.get(f"/v1/tasks/{done['id']}", params={"wait": 1})).json()
    assert task["status"] == "SUCCESS" and task["progress"] == 100
    for _ in range(200):  # the held-back progress callbacks arrive after the terminal one
        seen = outcomes(await events_of(fast, done["id"]))
        if "stale" in seen:
            break
        await asyncio.sleep(0.01)
    assert seen[0] == "applied" and "stale" in seen


async def test_delayed_callbacks(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "a fox [delay=0.05]")
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4


async def test_dropped_callbacks_are_caught_up_by_polling(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "a fox [drop]")
    assert done["status"] == "SUCCESS" and len(done["result"]["images"]) == 4
    events = await events_of(fast, done["id"])
    assert outcomes(events) == [] and "applied" in outcomes(events, "poll")
    assert 1 <= polls(fast, "GET /v2/jobs") <= 5


async def test_a_malformed_callback_is_rejected_and_the_rest_apply(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "a fox [malformed]")
    assert done["status"] == "SUCCESS"
    seen = outcomes(await events_of(fast, done["id"]))
    assert seen[0] == "rejected" and seen.count("applied") == 4


async def test_429_retry_after_is_obeyed(fast: httpx.AsyncClient) -> None:
    task = await submit(fast, {"provider": APIMART, "action": "imagine", "params": {"prompt": "x"}})
    sim(fast).faults.configure(
        {"rate_limit": 2, "retry_after": 1, "path_prefix": "/v1/midjourney/"}
    )
    done = await finished(fast, task["id"])
    assert done["status"] == "SUCCESS"
    assert sim(fast).faults.injected["rate_limit"] == 2
    # Two 429s, each followed by a full second of silence, then the answer: no hammering.
    assert polls(fast, "GET /v1/midjourney") <= 5
    events = await events_of(fast, done["id"])
    gap = _seconds(events[-1]["received_at"]) - _seconds(events[0]["received_at"])
    assert gap >= 1.8


async def test_5xx_backs_off_and_recovers(fast: httpx.AsyncClient) -> None:
    task = await submit(fast, {"provider": APIMART, "action": "imagine", "params": {"prompt": "x"}})
    sim(fast).faults.configure({"errors": 3, "path_prefix": "/v1/midjourney/"})
    done = await finished(fast, task["id"])
    assert done["status"] == "SUCCESS" and sim(fast).faults.injected["errors"] == 3
    assert polls(fast, "GET /v1/midjourney") <= 3 + 4


async def test_a_hanging_provider_times_out_and_is_polled_again(fast: httpx.AsyncClient) -> None:
    task = await submit(fast, {"provider": APIMART, "action": "imagine", "params": {"prompt": "x"}})
    sim(fast).faults.configure({"hang": 1, "hang_seconds": 2, "path_prefix": "/v1/midjourney/"})
    with capture_logs() as logs:
        done = await finished(fast, task["id"])
    assert done["status"] == "SUCCESS" and sim(fast).faults.injected["hang"] == 1
    # The hung request was given up after the poller's 0.3 s, not waited out.
    timeouts = [e for e in logs if e["event"] == "poll.result" and e["result"] == "unavailable"]
    assert timeouts and "did not answer" in timeouts[0]["error"]


async def test_a_task_that_never_finishes_ends_by_the_run_deadline(fast: httpx.AsyncClient) -> None:
    done = await run(fast, "slow [never]", provider=APIMART)
    assert done["status"] == "FAILURE" and done["error"]["code"] == "timeout"
    # Polls that learn nothing back off: about a dozen in the second, not a hundred.
    assert polls(fast, "GET /v1/midjourney") <= 25


async def test_a_forged_unsigned_completion_does_not_complete(fast: httpx.AsyncClient) -> None:
    body = {
        "provider": "simulator-vtrix",
        "action": "remix",
        "params": {"job_id": "mj-1", "index": 1, "prompt": "slow [never]"},
    }
    task = await submit(fast, body)
    token = services(fast).tokens.issue("simulator-vtrix", task["id"])
    forged = orjson.dumps(
        {"id": task["provider_task_id"], "status": "completed", "output": [{"content": []}]}
    )
    r = await fast.post(
        f"/v1/callbacks/simulator-vtrix/{token}",
        content=forged,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 202 and r.json()["outcomes"] == ["deferred"]
    got = (await fast.get(f"/v1/tasks/{task['id']}", params={"wait": 0.3})).json()
    assert got["status"] in ("SUBMITTED", "IN_PROGRESS")
    await fast.post(f"/v1/tasks/{task['id']}/cancel")


def _seconds(stamp: str) -> float:
    from service.domain.clock import parse_rfc3339

    return parse_rfc3339(stamp).timestamp()


@pytest.fixture
async def short_leases(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in open_app(settings, poller=PollerConfig(lease=0.3)):
        yield c


async def test_a_hold_longer_than_the_lease_does_not_double_poll(
    short_leases: httpx.AsyncClient,
) -> None:
    task = await submit(
        short_leases, {"provider": APIMART, "action": "imagine", "params": {"prompt": "x"}}
    )
    sim(short_leases).faults.configure(
        {"rate_limit": 1, "retry_after": 1, "path_prefix": "/v1/midjourney/"}
    )
    done = await finished(short_leases, task["id"])
    assert done["status"] == "SUCCESS"
    # One 429, then one answer: the held task was not claimed again when its lease ran out.
    assert polls(short_leases, "GET /v1/midjourney") <= 3


async def test_403_ends_a_task_only_where_it_means_gone(client: httpx.AsyncClient) -> None:
    from service.errors import ProviderRejected
    from service.store.base import PollClaim
    from service.workers.poller import Poller

    svc = services(client)
    poller = Poller(svc)
    results = {}
    for provider, body in (
        (
            "simulator-vtrix",
            {"action": "remix", "params": {"job_id": "j", "index": 1, "prompt": "p [never]"}},
        ),
        (APIMART, {"action": "imagine", "params": {"prompt": "p [never]"}}),
    ):
        task = await submit(client, {"provider": provider} | body)
        claim = PollClaim(
            task_id=task["id"],
            provider=provider,
            provider_task_id=task["provider_task_id"],
            status=task["status"],
            attempts=0,
        )
        await poller._rejected(
            svc.providers[provider], claim, ProviderRejected("forbidden", http_status=403)
        )
        results[provider] = (await client.get(f"/v1/tasks/{task['id']}")).json()
    assert results["simulator-vtrix"]["status"] != "FAILURE"  # balance: fixable, keep polling
    assert results[APIMART]["error"]["code"] == "provider_forbidden"


async def test_an_unsigned_hint_naming_another_task_is_403(client: httpx.AsyncClient) -> None:
    body = {
        "provider": "simulator-vtrix",
        "action": "remix",
        "params": {"job_id": "mj-1", "index": 1, "prompt": "slow [never]"},
    }
    task = await submit(client, body)
    token = services(client).tokens.issue("simulator-vtrix", task["id"])
    r = await client.post(
        f"/v1/callbacks/simulator-vtrix/{token}",
        content=orjson.dumps({"id": "someone-else", "status": "completed"}),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 403
    events = await events_of(client, task["id"])
    assert [e["outcome"] for e in events if e["source"] == "callback"] == ["rejected"]
