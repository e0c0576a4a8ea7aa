"""The SQLite store against a real file: SQL guards, group commit, durability, idempotency."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import ALLOWED, TERMINAL, Status
from service.errors import Conflict, NotFound, StoreUnavailable
from service.store.base import IdempotencyKey, NewTask, TaskQuery
from service.store.sqlite import SQLiteStore, migrations
from tests.support.ingest import apply


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "store.sqlite3"))
    await s.open()
    yield s
    await s.close()


async def make_task(store: SQLiteStore, owner: str = "o", **kw: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "id": new_id("task"),
        "owner": owner,
        "provider": "simulator",
        "action": "imagine",
        "params": {"prompt": "p"},
    }
    fields.update(kw)
    task, created = await store.create_task(NewTask(**fields))  # type: ignore[arg-type]
    assert created
    return task


def test_sql_transitions_table_agrees_with_python(tmp_path: Path) -> None:
    async def build() -> None:
        s = SQLiteStore(str(tmp_path / "t.sqlite3"))
        await s.open()
        await s.close()

    asyncio.run(build())
    conn = sqlite3.connect(tmp_path / "t.sqlite3")
    rows = set(conn.execute("SELECT from_status, to_status FROM transitions"))
    assert rows == {(a.value, b.value) for a, b in ALLOWED}

    # And the trigger enforces exactly that table on a real row in each starting state.
    for frm, to in itertools.product(Status, Status):
        if frm == to:
            continue
        conn.execute("DELETE FROM tasks")
        conn.execute(
            "INSERT INTO tasks (id, owner, provider, action, status, params, created_at,"
            " updated_at, finished_at) VALUES ('t', 'o', 'p', 'imagine', ?, '{}', 'x', 'x', ?)",
            (frm.value, "x" if frm in TERMINAL else None),
        )
        move = (
            "UPDATE tasks SET status = ?, finished_at = ?",
            (to.value, "x" if to in TERMINAL else None),
        )
        if (frm, to) in ALLOWED:
            conn.execute(*move)
        else:
            with pytest.raises(sqlite3.IntegrityError, match="illegal status transition"):
                conn.execute(*move)
    conn.close()


async def test_apply_records_event_and_changes_task(store: SQLiteStore) -> None:
    task = await make_task(store)
    done = await apply(
        store,
        str(task["id"]),
        Observation(
            status=Status.SUCCESS,
            source="callback",
            provider_task_id="p-1",
            result={"images": ["u"], "grid_url": None},
            dedupe_key="k1",
        ),
    )
    assert done.decision.applied and done.task["status"] == "SUCCESS"
    assert done.task["progress"] == 100 and done.task["finished_at"]
    assert done.task["provider_task_id"] == "p-1"
    again = await apply(
        store,
        str(task["id"]),
        Observation(status=Status.SUCCESS, source="callback", dedupe_key="k1"),
    )
    assert again.decision.outcome == "duplicate"
    conflict = await apply(
        store, str(task["id"]), Observation(status=Status.FAILURE, source="poll")
    )
    assert conflict.decision.outcome == "conflict"
    assert conflict.task["status"] == "SUCCESS" and conflict.task["sequence"] == 1
    events = await store.list_events(str(task["id"]), cursor=None, limit=10)
    assert [e["outcome"] for e in events.data] == ["applied", "duplicate", "conflict"]
    assert (await store.get_task("p-1", owner="o"))["id"] == task["id"]  # type: ignore[index]
    assert await store.get_task("p-1", owner="someone-else") is None


async def test_concurrent_applies_are_group_committed_and_all_kept(store: SQLiteStore) -> None:
    tasks = [await make_task(store) for _ in range(20)]
    steps = [Status.SUBMITTED, Status.IN_PROGRESS, Status.SUCCESS]
    batches_before, units_before = store.batches

    async def drive(task_id: str) -> None:
        for i, status in enumerate(steps):
            await apply(store, task_id, Observation(status=status, source="poll", progress=i * 40))

    await asyncio.gather(*(drive(str(t["id"])) for t in tasks))
    batches, units = store.batches
    assert units - units_before == 60
    assert batches - batches_before < 60  # several units shared a commit
    for t in tasks:
        got = await store.get_task(str(t["id"]), owner="o")
        assert got is not None and got["status"] == "SUCCESS" and got["sequence"] == 3


async def test_a_failing_unit_does_not_discard_its_batch_neighbours(store: SQLiteStore) -> None:
    good = [await make_task(store) for _ in range(10)]
    calls = [
        apply(store, str(t["id"]), Observation(status=Status.SUBMITTED, source="api")) for t in good
    ]
    calls.insert(
        5, apply(store, "task_missing", Observation(status=Status.SUBMITTED, source="api"))
    )
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], NotFound)
    for t in good:
        got = await store.get_task(str(t["id"]), owner="o")
        assert got is not None and got["status"] == "SUBMITTED"


async def test_a_locked_database_is_store_unavailable_and_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    store = SQLiteStore(str(path), busy_timeout_ms=50)
    await store.open()
    try:
        task = await make_task(store)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable):
            await apply(store, str(task["id"]), Observation(status=Status.SUBMITTED, source="api"))
        blocker.execute("ROLLBACK")
        blocker.close()
        ok = await apply(store, str(task["id"]), Observation(status=Status.SUBMITTED, source="api"))
        assert ok.decision.applied
    finally:
        await store.close()


async def test_idempotency_keys(store: SQLiteStore) -> None:
    key = IdempotencyKey(key="k", request_hash="h1")
    new = NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={})
    first, created = await store.create_task(new, idempotency=key)
    assert created
    again, created = await store.create_task(
        NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={}),
        idempotency=key,
    )
    assert not created and again["id"] == first["id"]
    with pytest.raises(Conflict):
        await store.create_task(
            NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={}),
            idempotency=IdempotencyKey(key="k", request_hash="h2"),
        )
    other_owner, created = await store.create_task(
        NewTask(id=new_id("task"), owner="o2", provider="p", action="imagine", params={}),
        idempotency=key,
    )
    assert created and other_owner["id"] != first["id"]


async def test_committed_rows_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "durable.sqlite3")
    store = SQLiteStore(path)
    await store.open()
    task = await make_task(store)
    await apply(store, str(task["id"]), Observation(status=Status.SUBMITTED, source="api"))
    await store.close()
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        got = await reopened.get_task(str(task["id"]), owner="o")
        assert got is not None and got["status"] == "SUBMITTED"
        assert reopened.schema_version == max(v for v, _ in migrations())
    finally:
        await reopened.close()


async def test_listing_filters_and_cursor_paging(store: SQLiteStore) -> None:
    made = [await make_task(store, action="imagine" if i % 2 else "upscale") for i in range(7)]
    await apply(store, str(made[0]["id"]), Observation(status=Status.SUBMITTED, source="api"))
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_tasks(TaskQuery(owner="o", limit=3, cursor=cursor))
        seen += [t["id"] for t in page.data]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [t["id"] for t in reversed(made)]
    ups = await store.list_tasks(TaskQuery(owner="o", action="upscale"))
    assert {t["action"] for t in ups.data} == {"upscale"} and len(ups.data) == 4
    submitted = await store.list_tasks(TaskQuery(owner="o", status=["SUBMITTED"]))
    assert [t["id"] for t in submitted.data] == [made[0]["id"]]
    assert (await store.list_tasks(TaskQuery(owner="nobody"))).data == []


async def test_a_store_error_in_one_unit_does_not_misreport_the_others(
    store: SQLiteStore,
) -> None:
    tasks = [await make_task(store) for _ in range(6)]

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT * FROM no_such_table")  # an OperationalError inside a unit

    calls: list[Any] = [
        apply(store, str(t["id"]), Observation(status=Status.SUBMITTED, source="api"))
        for t in tasks
    ]
    calls.insert(3, store._writer.run(broken))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[3], StoreUnavailable)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)
    for t in tasks:
        got = await store.get_task(str(t["id"]), owner="o")
        assert got is not None and got["status"] == "SUBMITTED"
