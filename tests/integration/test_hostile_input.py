"""Hostile input hurts no one: each finding of issue 8 that lives in the request path, reproduced
and refused with a clear 4xx, and nothing sent to a provider for a request that is refused."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from service.config import Settings
from tests.conftest import open_app
from tests.integration.test_api_tasks import assert_problem, finished, submit
from tests.integration.test_callbacks import SLOW, completed, events_of, post_callback
from tests.integration.test_faults import sim

APIMART = "simulator-apimart"


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"a": value}
    return value


def nested_text(depth: int) -> str:
    """JSON nested `depth` objects deep, written by hand: no encoder writes 1000 levels."""
    return '{"a":' * depth + '"deep"' + "}" * depth


def provider_requests(client: httpx.AsyncClient) -> int:
    """Every request the simulator got but image downloads: what reached "the provider"."""
    return sum(n for route, n in sim(client).request_counts.items() if "/images/" not in route)


@pytest.mark.parametrize("depth", [33, 253, 254, 1000])
async def test_deep_json_is_refused_before_the_provider_is_called(
    client: httpx.AsyncClient, depth: int
) -> None:
    deep = nested_text(depth)
    for body in (
        '{"action": "imagine", "params": {"prompt": "x"}, "metadata": ' + deep + "}",
        '{"provider": "' + APIMART + '", "action": "imagine",'
        ' "params": {"prompt": "x", "metadata": ' + deep + "}}",
    ):
        r = await client.post(
            "/v1/tasks", content=body, headers={"content-type": "application/json"}
        )
        problem = assert_problem(r, 400)
        assert "nested deeper than 32 levels" in problem["detail"]
    assert provider_requests(client) == 0
    assert (await client.get("/v1/tasks")).json()["data"] == []


async def test_json_as_deep_as_allowed_goes_through_to_the_webhook(
    client: httpx.AsyncClient,
) -> None:
    # 32 levels in all: the body is 1, metadata 31 more. It is stored, listed and announced.
    metadata = nested(30)
    task = await submit(
        client, {"action": "imagine", "params": {"prompt": "x"}, "metadata": metadata}
    )
    done = await finished(client, task["id"])
    assert done["status"] == "SUCCESS" and done["metadata"] == metadata


async def test_a_deep_callback_body_is_a_400_not_a_500(client: httpx.AsyncClient) -> None:
    task = await submit(client, SLOW)
    body = b'{"event": "completed", "jobId": "%s", "x": %s}' % (
        task["provider_task_id"].encode(),
        nested_text(300).encode(),
    )
    r = await post_callback(client, task, body)
    assert_problem(r, 400)
    # The task is untouched and still takes a good callback.
    good = await post_callback(client, task, completed(task["provider_task_id"]))
    assert good.status_code == 200 and good.json()["outcomes"] == ["applied"]


@pytest.fixture
async def two_owners(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    keyed = replace(settings, api_keys={"alice-key-123": "alice", "bob-key-4567": "bob"})
    async for c in open_app(keyed):
        yield c


ALICE = {"Authorization": "Bearer alice-key-123"}
VTRIX_INPAINT = {"index": 1, "prompt": "a hat", "mask_url": "https://cdn.example.com/mask.png"}
BOB = {"Authorization": "Bearer bob-key-4567"}


@pytest.mark.parametrize(
    ("provider", "action", "key", "extra"),
    [
        (APIMART, "upscale", "task_id", {"index": 1}),
        ("simulator", "upscale", "parent_job_id", {"index": 1}),
        ("simulator-vtrix", "inpaint", "job_id", VTRIX_INPAINT),
    ],
)
@pytest.mark.parametrize("pad", [" {} ", "\t{}", "{}\n", "\u00a0{}"])
async def test_whitespace_never_reaches_another_owners_job(
    two_owners: httpx.AsyncClient,
    provider: str,
    action: str,
    key: str,
    extra: dict[str, Any],
    pad: str,
) -> None:
    root: dict[str, Any] = {"provider": provider, "action": "imagine", "params": {"prompt": "fox"}}
    if provider == "simulator-vtrix":  # no imagine on Vtrix: alice's job is a follow-up's
        root["action"] = "inpaint"
        root["params"] = {"job_id": "external-mj-job-1", **VTRIX_INPAINT}
    r = await two_owners.post("/v1/tasks", json=root, headers=ALICE)
    assert r.status_code == 202, r.text
    grid = await finished(two_owners, r.json()["id"], headers=ALICE)
    before = provider_requests(two_owners)
    body = {
        "provider": provider,
        "action": action,
        "params": {key: pad.format(grid["provider_task_id"]), **extra},
    }
    assert_problem(await two_owners.post("/v1/tasks", json=body, headers=BOB), 422, f"params.{key}")
    assert provider_requests(two_owners) == before


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt": "x" * 8193}, "params.prompt"),
        ({"prompt": "x", "metadata": {"blob": "x" * 17000}}, "params.metadata"),
        ({"prompt": "x", "negative_prompt": "n" * 9000}, "params.negative_prompt"),
        (
            {"prompt": "x", "image_urls": ["https://cdn.example.com/a.png"] * 17},
            "params.image_urls",
        ),
        ({"prompt": "x", "sref": ["1234"] * 17}, "params.sref"),
    ],
)
async def test_every_param_has_a_bound(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    body = {"provider": APIMART, "action": "imagine", "params": params}
    assert_problem(await client.post("/v1/tasks", json=body), 422, field)
    assert provider_requests(client) == 0


async def test_the_whole_params_object_has_a_bound(client: httpx.AsyncClient) -> None:
    params = {"prompt": "x" * 8000, "negative_prompt": "n" * 8000, "style": "s" * 8000}
    params |= {"version": "v" * 8000, "metadata": {f"k{i}": "m" * 1000 for i in range(15)}}
    params |= {"niji": "x" * 8000, "sref": ["s" * 8000] * 8}
    body = {"provider": APIMART, "action": "imagine", "params": params}
    assert_problem(await client.post("/v1/tasks", json=body), 422, "params")
    assert provider_requests(client) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",
        "http://[zz]/",
        "https://cdn.example.com:99999/a.png",
        "https://cdn.example.com/a.png\r\nX-Injected: 1",
        "https://cdn.example.com/a\n.png",
        "https://cdn.example.com/a b.png",
        "https://cdn.example.com/" + "a" * 2100,
    ],
)
async def test_malformed_urls_are_a_422_wherever_they_come(
    client: httpx.AsyncClient, url: str
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "imagine", "params": {"prompt": "x"}, "callback_url": url}, "callback_url"),
        (
            {
                "provider": APIMART,
                "action": "imagine",
                "params": {"prompt": "x", "image_urls": [url]},
            },
            "params.image_urls[0]",
        ),
        (
            {
                "provider": APIMART,
                "action": "video",
                "params": {"image_urls": ["https://cdn.example.com/1.png"], "end_url": url},
            },
            "params.end_url",
        ),
        (
            {
                "provider": "simulator-vtrix",
                "action": "inpaint",
                "params": {"job_id": "j-1", "index": 1, "prompt": "x", "mask_url": url},
            },
            "params.mask_url",
        ),
    ]
    for body, field in cases:
        assert_problem(await client.post("/v1/tasks", json=body), 422, field)
    endpoint = await client.post("/v1/endpoints", json={"url": url})
    assert_problem(endpoint, 422, "url")
    assert provider_requests(client) == 0


async def test_a_malformed_modal_mask_url_is_a_422(client: httpx.AsyncClient) -> None:
    grid = await finished(
        client,
        (
            await submit(
                client, {"provider": APIMART, "action": "imagine", "params": {"prompt": "x"}}
            )
        )["id"],
    )
    upscaled = await finished(
        client,
        (
            await submit(
                client, {"action": "upscale", "parent_id": grid["id"], "params": {"index": 1}}
            )
        )["id"],
    )
    inpaint = await submit(client, {"action": "inpaint", "parent_id": upscaled["id"]})
    for _ in range(50):  # the simulator may answer `submitted` and say MODAL when polled
        if inpaint["status"] == "MODAL":
            break
        inpaint = (await client.get(f"/v1/tasks/{inpaint['id']}", params={"wait": 5})).json()
    assert inpaint["status"] == "MODAL", inpaint
    before = provider_requests(client)
    for url in ("http://[::1/", "http://[zz]/", "https://cdn.example.com/m.png\r\nX: y"):
        r = await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"mask_url": url})
        assert_problem(r, 422, "mask_url")
    big = await client.post(f"/v1/tasks/{inpaint['id']}/modal", json={"prompt": "p" * 9000})
    assert_problem(big, 422, "prompt")
    assert provider_requests(client) == before


@pytest.mark.parametrize(
    "value", ["²", "①", "٣", "\uff11\uff10", "-1", "+5", " 5", "0", "201", "9" * 40]
)
async def test_integers_are_ascii_digits_only(client: httpx.AsyncClient, value: str) -> None:
    assert_problem(await client.get("/v1/tasks", params={"limit": value}), 422, "limit")


@pytest.mark.parametrize("field", ["dref", "cref", "sref"])
@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8000/", "http://[::1]/"]
)
async def test_reference_urls_go_through_the_outbound_guard(
    settings: Settings, field: str, url: str
) -> None:
    # With API keys, as in production: loopback is refused (dev mode opens it, see README).
    guarded = replace(
        settings, outbound_allow=(), api_keys={"alice-key-123": "alice"}, simulator=True
    )
    async for client in open_app(guarded):
        value: Any = url if field == "dref" else [url]
        body = {"provider": APIMART, "action": "imagine", "params": {"prompt": "x", field: value}}
        named = f"params.{field}" if field == "dref" else f"params.{field}[0]"
        r = await client.post("/v1/tasks", json=body, headers=ALICE)
        assert_problem(r, 422, named)
        assert provider_requests(client) == 0


async def test_style_codes_are_not_urls(client: httpx.AsyncClient) -> None:
    body = {
        "provider": APIMART,
        "action": "imagine",
        "params": {"prompt": "x", "sref": ["123456", "random"]},
    }
    assert (await client.post("/v1/tasks", json=body)).status_code == 202


async def test_a_bad_token_is_refused_before_the_body_is_read(client: httpx.AsyncClient) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB, over the 1 MiB limit: a 413 would mean it was read
            sent += 1
            yield b"x" * 65536

    r = await client.post("/v1/callbacks/simulator/forged-token", content=body())
    assert_problem(r, 401)
    assert sent <= 1


async def test_a_replayed_callback_is_counted_not_stored_again(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    task = await submit(client, SLOW)
    body = completed(task["provider_task_id"])
    outcomes = []
    for _ in range(50):
        r = await post_callback(client, task, body)
        assert r.status_code == 200
        outcomes += r.json()["outcomes"]
    assert outcomes == ["applied"] + ["duplicate"] * 49
    events = [e for e in await events_of(client, task["id"]) if e["source"] == "callback"]
    assert [e["outcome"] for e in events] == ["applied", "duplicate"]
    assert events[1]["repeats"] == 48
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as db:
        (rows,) = db.execute(
            "SELECT count(*) FROM events WHERE task_id = ?", (task["id"],)
        ).fetchone()
    assert rows == 3  # the submission, the callback, and its one duplicate


async def test_a_data_prefix_does_not_lift_the_bound_of_a_text_field(
    client: httpx.AsyncClient,
) -> None:
    body = {"provider": APIMART, "action": "imagine", "params": {"prompt": "data:" + "x" * 9000}}
    assert_problem(await client.post("/v1/tasks", json=body), 422, "params.prompt")


@pytest.mark.parametrize("value", ["1e1", "+1", " 1", "1_0", "nan", "inf", "\uff11"])
async def test_wait_takes_plain_decimal_seconds_only(client: httpx.AsyncClient, value: str) -> None:
    task = await submit(client, SLOW)
    r = await client.get(f"/v1/tasks/{task['id']}", params={"wait": value})
    assert_problem(r, 422, "wait")


@pytest.mark.parametrize("value", ["", "SUCCESS,,FAILURE", "DONE"])
async def test_an_empty_or_unknown_status_filter_is_a_422_everywhere(
    client: httpx.AsyncClient, value: str
) -> None:
    for path in ("/v1/tasks", "/v1/events/stream"):
        assert_problem(await client.get(path, params={"status": value}), 422, "status")
