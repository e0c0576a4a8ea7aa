"""The submission queue's store contract (issue 13), on SQLite and PostgreSQL: a provider's
in-flight cap counted in the store, leases, round-robin across owners, the owner's depth."""

from __future__ import annotations

import asyncio
import time

from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import Status
from service.store.base import Store
from tests.integration.test_store_contract import backend, make_task, store, two_stores

__all__ = ["backend", "store", "two_stores"]  # the contract suite's fixtures, on both stores
from tests.support.ingest import apply

REQUEST = {"action": "imagine", "params": {"prompt": "p"}, "parent": None}


async def queued(store: Store, owner: str = "o", *, provider: str = "simulator") -> str:
    task = await make_task(store, owner, provider=provider)
    admitted = await store.enqueue(
        task["id"],
        provider=provider,
        owner=owner,
        request=REQUEST,
        now=time.time(),
        cap=None,
        lease=30,
        send_now=False,
    )
    assert not admitted
    return str(task["id"])


async def test_a_new_task_takes_a_slot_only_when_there_is_room(store: Store) -> None:
    now = time.time()
    ids = [(await make_task(store))["id"] for _ in range(3)]
    took = [
        await store.enqueue(
            i, provider="simulator", owner="o", request=REQUEST, now=now, cap=2, lease=30
        )
        for i in ids
    ]
    assert took == [True, True, False]  # two slots held by sends under way, the third waits
    depth = (await store.queue_depths(now))["simulator"]
    assert (depth.waiting, depth.sending) == (1, 2)
    assert await store.queued_for("o", "simulator") == 3
    assert await store.claim_submissions("simulator", now, cap=2, limit=10, lease=30) == []
    # One send is recorded (SUBMITTED: still in flight), the other ends: one slot is free.
    await apply(
        store, ids[0], Observation(status=Status.SUBMITTED, source="api", provider_task_id="p1")
    )
    await store.finish_submission(ids[0])
    await store.finish_submission(ids[1])
    [claim] = await store.claim_submissions("simulator", now, cap=2, limit=10, lease=30)
    assert claim.task_id == ids[2] and claim.request == REQUEST and claim.attempts == 1
    assert not claim.reclaimed


async def test_new_tasks_queue_behind_waiting_ones(store: Store) -> None:
    await queued(store)
    task = await make_task(store)
    assert not await store.enqueue(
        task["id"], provider="simulator", owner="o", request=REQUEST, now=time.time(),
        cap=None, lease=30,
    )  # fmt: skip


async def test_jobs_in_flight_count_against_the_cap(store: Store) -> None:
    for n in range(2):  # two jobs the provider runs (submitted, not terminal)
        task = await make_task(store)
        await apply(
            store,
            task["id"],
            Observation(status=Status.IN_PROGRESS, source="api", provider_task_id=f"p{n}"),
        )
    for _ in range(3):
        await queued(store)
    now = time.time()
    assert len(await store.claim_submissions("simulator", now, cap=3, limit=10, lease=30)) == 1
    assert await store.claim_submissions("simulator", now, cap=3, limit=10, lease=30) == []
    # Other providers have slots of their own.
    other = await queued(store, provider="vtrix")
    [claim] = await store.claim_submissions("vtrix", time.time(), cap=1, limit=10, lease=30)
    assert claim.task_id == other


async def test_owners_take_turns(store: Store) -> None:
    burst = [await queued(store, "alice") for _ in range(5)]
    bob = await queued(store, "bob")
    carol = await queued(store, "carol")
    now = time.time()
    first = await store.claim_submissions("simulator", now, cap=None, limit=3, lease=30)
    assert [c.task_id for c in first] == [burst[0], bob, carol]
    nxt = await store.claim_submissions("simulator", now, cap=None, limit=10, lease=30)
    assert [c.task_id for c in nxt] == burst[1:]


async def test_a_lease_keeps_a_task_until_it_runs_out_or_is_released(store: Store) -> None:
    task_id = await queued(store)
    await store.claim_submissions("simulator", time.time(), cap=None, limit=5, lease=0.05)
    assert (
        await store.claim_submissions("simulator", time.time(), cap=None, limit=5, lease=30) == []
    )
    await asyncio.sleep(0.1)
    [again] = await store.claim_submissions("simulator", time.time(), cap=None, limit=5, lease=30)
    assert again.task_id == task_id and again.reclaimed and again.attempts == 2
    await store.release_submission(task_id, due_at=time.time() + 60, last_answer="429 busy")
    assert (
        await store.claim_submissions("simulator", time.time(), cap=None, limit=5, lease=30) == []
    )
    kept = await store.submission(task_id)
    assert kept is not None and kept.last_answer == "429 busy" and kept.lease_until is None
    [later] = await store.claim_submissions(
        "simulator", time.time() + 61, cap=None, limit=5, lease=30
    )
    assert later.task_id == task_id and not later.reclaimed
    await store.finish_submission(task_id)
    assert await store.submission(task_id) is None
    assert await store.queue_depths(time.time()) == {}


async def test_two_processes_never_exceed_the_cap(two_stores: tuple[Store, Store]) -> None:
    one, two = two_stores
    for _ in range(12):
        await queued(one, new_id("owner"))
    now = time.time()
    claims = await asyncio.gather(
        *(s.claim_submissions("simulator", now, cap=4, limit=10, lease=30) for s in (one, two)),
        *(s.claim_submissions("simulator", now, cap=4, limit=10, lease=30) for s in (two, one)),
    )
    taken = [c.task_id for batch in claims for c in batch]
    assert len(taken) == 4 and len(set(taken)) == 4
