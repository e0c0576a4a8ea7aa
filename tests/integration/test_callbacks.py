"""The callback route: tokens, signatures, malformed and foreign bodies, size, 503, no 3xx."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import orjson

from service.providers import simulator_key
from service.providers.apiframe import sign_body
from service.services import Services
from tests.integration.test_api_tasks import assert_problem, submit

#: A task the simulator leaves alone (no webhooks), so only the test's callbacks reach it.
SLOW = {"action": "imagine", "params": {"prompt": "slow [never] [drop]"}}


def services(client: httpx.AsyncClient) -> Services:
    svc: Services = client.app.state.services  # type: ignore[attr-defined]
    return svc


async def post_callback(
    client: httpx.AsyncClient,
    task: dict[str, Any],
    body: bytes,
    *,
    key: str | None = None,
    token: str | None = None,
    path_suffix: str = "",
) -> httpx.Response:
    token = token or services(client).tokens.issue("simulator", task["id"])
    key = key or simulator_key(services(client).settings)
    return await client.post(
        f"/v1/callbacks/simulator/{token}{path_suffix}",
        content=body,
        headers={"content-type": "application/json", "X-Webhook-Signature": sign_body(key, body)},
    )


def completed(job_id: str, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "event": "completed",
            "jobId": job_id,
            "status": "COMPLETED",
            "progress": 100,
            "result": {"images": ["https://cdn.example/1.png"], "gridUrl": None},
        }
        | extra
    )


async def events_of(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await client.get(f"/v1/tasks/{task_id}/events")).json()["data"]
    return data


async def test_signed_callback_is_applied_once(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    body = completed(task["provider_task_id"])
    first = await post_callback(client, task, body)
    assert first.status_code == 200 and first.json()["outcomes"] == ["applied"]
    again = await post_callback(client, task, body)
    assert again.status_code == 200 and again.json()["outcomes"] == ["duplicate"]
    failed = orjson.dumps(
        {"event": "failed", "jobId": task["provider_task_id"], "status": "FAILED"}
    )
    late = await post_callback(client, task, failed)
    assert late.status_code == 200 and late.json()["outcomes"] == ["conflict"]
    got = (await client.get(f"/v1/tasks/{task['id']}")).json()
    assert got["status"] == "SUCCESS" and got["sequence"] == 2


async def test_bad_token_is_401_and_records_nothing(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    r = await post_callback(client, task, completed(task["provider_task_id"]), token="forged.token")
    assert_problem(r, 401)
    # A token issued for another provider does not verify here either.
    other = services(client).tokens.issue("apiframe", task["id"])
    assert_problem(await post_callback(client, task, b"{}", token=other), 401)
    assert [e["source"] for e in await events_of(client, task["id"])] == ["api"]


async def test_bad_signature_is_401_and_recorded_as_rejected(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    r = await post_callback(client, task, completed(task["provider_task_id"]), key="not-the-key")
    assert_problem(r, 401)
    last = (await events_of(client, task["id"]))[-1]
    assert last["outcome"] == "rejected" and "signature" in last["detail"]["reason"]
    assert (await client.get(f"/v1/tasks/{task['id']}")).json()["status"] == "SUBMITTED"


async def test_malformed_body_is_400_and_recorded(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    assert_problem(await post_callback(client, task, b"not json"), 400)
    assert_problem(await post_callback(client, task, b'{"event": "completed"}'), 400)
    outcomes = [e["outcome"] for e in await events_of(client, task["id"])]
    assert outcomes == ["applied", "rejected", "rejected"]


async def test_unknown_status_is_200_but_rejected(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    body = orjson.dumps({"jobId": task["provider_task_id"], "status": "TELEPORTED"})
    r = await post_callback(client, task, body)
    assert r.status_code == 200 and r.json()["outcomes"] == ["rejected"]


async def test_a_body_naming_another_task_is_403(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    r = await post_callback(client, task, completed("someone-elses-job"))
    assert_problem(r, 403)
    last = (await events_of(client, task["id"]))[-1]
    assert last["outcome"] == "rejected"
    assert (await client.get(f"/v1/tasks/{task['id']}")).json()["status"] == "SUBMITTED"


async def test_never_a_redirect_and_unknown_provider_is_404(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    r = await post_callback(client, task, completed(task["provider_task_id"]), path_suffix="/")
    assert r.status_code == 404
    assert_problem(await client.post("/v1/callbacks/nobody/x", content=b"{}"), 404)


async def test_oversize_body_is_413(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    big = completed(task["provider_task_id"], padding="x" * 2_000_000)
    assert_problem(await post_callback(client, task, big), 413)


async def test_oversize_chunked_body_is_413_without_reading_it_all(
    client: httpx.AsyncClient,
) -> None:
    task = await submit(client, SLOW)
    token = services(client).tokens.issue("simulator", task["id"])
    sent = 0

    async def chunks() -> Any:
        nonlocal sent
        for _ in range(64):  # 4 MiB offered, no Content-Length
            sent += 1
            yield b"x" * 65536

    r = await client.post(
        f"/v1/callbacks/simulator/{token}",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 413)
    assert sent < 64


async def test_store_that_cannot_commit_answers_503(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    store = services(client).store
    # Shorten the writer's busy timeout (5 s) so the locked store gives up quickly.
    await store._writer.run(lambda conn: conn.execute("PRAGMA busy_timeout = 50"))  # type: ignore[attr-defined]
    blocker = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        r = await post_callback(client, task, completed(task["provider_task_id"]))
        assert_problem(r, 503)
        assert r.headers["retry-after"] == "1"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Nothing was acknowledged, so the provider's retry is applied in full.
    retry = await post_callback(client, task, completed(task["provider_task_id"]))
    assert retry.status_code == 200 and retry.json()["outcomes"] == ["applied"]
