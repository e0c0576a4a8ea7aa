"""The deliver benchmark job, quick, on each store: a real receiver process on loopback, the
outbox drained by a real Deliverer beside the raw httpx loop; every row ends delivered (the
store says so, and the receiver saw each once), no attempt failed, every figure is positive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from service.bench_cluster import bench_database
from service.bench_deliver import OWNER, QUICK_ROWS, QUICK_SINGLES, run_deliver
from service.bench_report import Figure, Options, machine, table
from service.store.base import open_store
from tests.support.postgres import ADMIN_URL, require_postgres


async def _deliveries(database_url: str) -> tuple[int, dict[str, int]]:
    """How many of the bench's rows the store has as delivered, and its counts of the others."""
    store = open_store(database_url)
    await store.open()
    try:
        delivered, cursor = 0, None
        while True:
            page = await store.list_deliveries(
                OWNER, status="delivered", task_id=None, cursor=cursor, limit=100
            )
            delivered += len(page.data)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return delivered, (await store.stats(time.time())).deliveries
    finally:
        await store.close()


def _check(figures: list[Figure], store: str) -> None:
    print(table(figures, machine()))  # shown by pytest -s, or when the test fails
    by_what = {f.what.split(",")[0]: f for f in figures}
    drain = by_what["outbox drain"]
    assert drain.job == "deliver" and drain.unit == "deliveries/s"
    assert drain.what.endswith(store)
    assert drain.value > 0 and drain.reference is not None and drain.reference > 0
    assert drain.ratio is not None and drain.ratio > 0
    assert drain.goal == ">= 0.8x" and drain.met is not None
    assert f"{QUICK_ROWS} of {QUICK_ROWS} delivered" in drain.notes[0]
    assert "0 left pending" in drain.notes[0]
    assert f"the receiver saw {QUICK_ROWS} POSTs" in drain.notes[0]
    assert "(0 failed)" in drain.notes[0]  # the raw loop's requests
    failed = by_what["failed delivery attempts"]
    assert failed.value == 0 and failed.met is True
    claim = by_what["claim with 4 in flight (none leased)"]
    assert claim.value > 0 and claim.reference is not None and claim.reference > 0
    latencies = [f for f in figures if f.what.startswith("one new row")]
    assert [f.what.split(", ")[2] for f in latencies] == ["p50", "p99"]
    for f in latencies:
        assert f.value > 0 and f.reference is not None and f.reference > 0


def test_deliver_on_sqlite(tmp_path: Path) -> None:
    figures = run_deliver(Options(work=tmp_path, quick=True, seconds=1, connections=4))
    _check(figures, "SQLite")
    deliveries = asyncio.run(_deliveries(f"sqlite:///{tmp_path}/deliver.sqlite3"))
    assert deliveries == (QUICK_ROWS + QUICK_SINGLES, {})  # none pending, none dead


def test_deliver_on_postgres(tmp_path: Path) -> None:
    require_postgres()
    with bench_database(ADMIN_URL) as (url, _version):
        figures = run_deliver(
            Options(
                work=tmp_path,
                quick=True,
                seconds=1,
                connections=4,
                store="postgres",
                database_url=url,
            )
        )
        _check(figures, "PostgreSQL")
        assert any("before ANALYZE" in note for f in figures for note in f.notes)
        deliveries = asyncio.run(_deliveries(url))
    assert deliveries == (QUICK_ROWS + QUICK_SINGLES, {})  # none pending, none dead
