"""What only the SQLite store has: the group-committing writer (batches, a failing unit kept to its
caller) and a locked file. The store contract is tests/integration/test_store_contract.py."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.domain.models import Observation
from service.domain.status import Status
from service.errors import NotFound, StoreUnavailable
from service.store.sqlite import SQLiteStore
from tests.integration.test_store_contract import make_task
from tests.support.ingest import apply


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "store.sqlite3"))
    await s.open()
    yield s
    await s.close()


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


class _Locked:
    """The loop-thread connection meeting a lock (a checkpoint's, a recovery's)."""

    def execute(self, *args: Any) -> Any:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        pass


async def test_a_point_read_that_meets_a_lock_goes_to_a_pooled_reader(store: SQLiteStore) -> None:
    task = await make_task(store)
    assert store._inline is not None  # the point read runs on the loop's thread
    assert (await store.get_task(task["id"], owner="o")) == task
    store._inline.close()
    store._inline = _Locked()  # type: ignore[assignment]
    got = await store.get_task(task["id"], owner="o")  # not an error, and not waiting
    assert got is not None and got["id"] == task["id"]
    assert await store.next_poll_due() is None
