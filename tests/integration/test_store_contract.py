"""The store contract, run against every store: SQLite on a real file, PostgreSQL on a fresh
database of its own. The SQL guards, ingest's writes, idempotency, leases and claims; and what
several processes at once may rely on (two stores on one database stand for two processes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from service import cli
from service.config import ConfigError, Settings, redacted_url
from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import ALLOWED, TERMINAL, Status
from service.errors import Conflict, NotFound, StoreUnavailable
from service.store import postgres_db
from service.store.base import (
    DeliveryResult,
    IdempotencyKey,
    NewTask,
    Schedule,
    Store,
    TaskQuery,
    TimerLimits,
    open_store,
)
from service.store.postgres import PostgresStore
from service.store.sqlite import SQLiteStore
from service.store.sqlite import migrations as sqlite_migrations
from tests.conftest import STORES
from tests.support.ingest import apply
from tests.support.postgres import ADMIN_URL, database_url, fresh_database


class Backend:
    """One database, and the stores opened on it (each one a process, as far as it can tell)."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.opened: list[Store] = []
        self._raw: Any = None

    async def open(self) -> Store:
        store = open_store(self.url)
        await store.open()
        self.opened.append(store)
        return store

    async def close(self, store: Store) -> None:
        self.opened.remove(store)
        await store.close()

    async def close_all(self) -> None:
        for store in reversed(self.opened):
            await store.close()
        self.opened.clear()
        if self._raw is not None:
            await self._raw.close()

    async def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run `statement` (`?` placeholders) on a connection of its own, outside any store."""
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            # closed after: committed, or rolled back when a trigger refused the statement
            with contextlib.closing(sqlite3.connect(path)) as conn, conn:
                return list(conn.execute(statement, args))
        numbered = itertools.count(1)  # our statements have no ? in their literals
        statement = "".join(f"${next(numbered)}" if c == "?" else c for c in statement)
        if self._raw is None:
            self._raw = await asyncpg.connect(self.url)
        return [tuple(r) for r in await self._raw.fetch(statement, *args)]


@pytest.fixture(params=STORES)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with AsyncExitStack() as stack:
        if request.param == "postgres":
            url = await stack.enter_async_context(fresh_database())
        else:
            url = f"sqlite:///{tmp_path}/store.sqlite3"
        found = Backend(request.param, url)
        stack.push_async_callback(found.close_all)
        yield found


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


@pytest.fixture
async def two_stores(backend: Backend) -> tuple[Store, Store]:
    """Two stores on one database: two processes, with a pool or writer each."""
    return await backend.open(), await backend.open()


async def make_task(store: Store, owner: str = "o", **kw: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": new_id("task"),
        "owner": owner,
        "provider": "simulator",
        "action": "imagine",
        "params": {"prompt": "p"},
    }
    fields.update(kw)
    task, created = await store.create_task(NewTask(**fields))
    assert created
    return task


async def due_tasks(store: Store, n: int, **kw: Any) -> list[str]:
    """`n` SUBMITTED tasks, each due for a poll a second ago."""
    ids = []
    for _ in range(n):
        task = await make_task(store, **kw)
        await apply(
            store,
            task["id"],
            Observation(status=Status.SUBMITTED, source="api", provider_task_id=new_id("p")),
            schedule=Schedule(next_poll_at=time.time() - 1),
        )
        ids.append(task["id"])
    return ids


# -- the state machine in SQL -----------------------------------------------------------------


async def test_transitions_tables_agree_with_python(tmp_path: Path) -> None:
    """domain/status.py's ALLOWED, SQLite's and PostgreSQL's transitions tables: one table."""
    sqlite_store = SQLiteStore(str(tmp_path / "t.sqlite3"))
    await sqlite_store.open()
    await sqlite_store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "t.sqlite3")) as conn:
        in_sqlite = set(conn.execute("SELECT from_status, to_status FROM transitions"))
    async with fresh_database() as url:
        pg_store = PostgresStore(url)
        await pg_store.open()
        await pg_store.close()
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT from_status, to_status FROM transitions")
        finally:
            await conn.close()
    in_postgres = {(r["from_status"], r["to_status"]) for r in rows}
    assert in_sqlite == in_postgres == {(a.value, b.value) for a, b in ALLOWED}


async def test_sql_enforces_the_transition_table(backend: Backend) -> None:
    """The trigger refuses exactly the moves the table leaves out, on a real row in each
    starting state, and any decrease of progress."""
    store = await backend.open()
    await backend.close(store)  # migrated: raw SQL from here on
    insert = (
        "INSERT INTO tasks (id, owner, provider, action, status, params, progress, created_at,"
        " updated_at, finished_at) VALUES ('t', 'o', 'p', 'imagine', ?, '{}', 50, 'x', 'x', ?)"
    )
    refused = sqlite3.IntegrityError if backend.kind == "sqlite" else asyncpg.CheckViolationError
    for frm, to in itertools.product(Status, Status):
        if frm == to:
            continue
        await backend.sql("DELETE FROM tasks")
        await backend.sql(insert, frm.value, "x" if frm in TERMINAL else None)
        move = (
            "UPDATE tasks SET status = ?, finished_at = ?",
            to.value,
            "x" if to in TERMINAL else None,
        )
        if (frm, to) in ALLOWED:
            await backend.sql(*move)
        else:
            with pytest.raises(refused, match="illegal status transition"):
                await backend.sql(*move)
    with pytest.raises(refused, match="progress may not decrease"):
        await backend.sql("UPDATE tasks SET progress = 10")


# -- ingest's writes --------------------------------------------------------------------------


async def test_apply_records_event_and_changes_task(store: Store) -> None:
    task = await make_task(store)
    done = await apply(
        store,
        task["id"],
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
        store, task["id"], Observation(status=Status.SUCCESS, source="callback", dedupe_key="k1")
    )
    assert again.decision.outcome == "duplicate"
    conflict = await apply(store, task["id"], Observation(status=Status.FAILURE, source="poll"))
    assert conflict.decision.outcome == "conflict"
    assert conflict.task["status"] == "SUCCESS" and conflict.task["sequence"] == 1
    events = await store.list_events(task["id"], cursor=None, limit=10)
    assert [e["outcome"] for e in events.data] == ["applied", "duplicate", "conflict"]
    assert events.data[0]["detail"] == {"provider_task_id": "p-1"}
    got = await store.get_task("p-1", owner="o")
    assert got is not None and got["id"] == task["id"] and got == done.task
    assert await store.get_task("p-1", owner="someone-else") is None
    assert await store.get_task("p-1", owner=None) == got
    assert await store.get_task("no\x00such", owner=None) is None


async def test_a_replayed_delivery_is_one_duplicate_that_counts_its_repeats(store: Store) -> None:
    task = await make_task(store)
    obs = Observation(status=Status.IN_PROGRESS, source="callback", progress=10, dedupe_key="d")
    outcomes = [(await apply(store, task["id"], obs)).event for _ in range(5)]
    assert [e["outcome"] for e in outcomes] == ["applied"] + ["duplicate"] * 4
    assert [e["repeats"] for e in outcomes] == [0, 0, 1, 2, 3]
    events = (await store.list_events(task["id"], cursor=None, limit=10)).data
    assert [(e["outcome"], e["repeats"]) for e in events] == [("applied", 0), ("duplicate", 3)]


async def test_json_and_views_are_kept_as_written(store: Store) -> None:
    """Key order, unicode, nesting: what a client sent is what it reads back (the webhook body
    is built from the loaded task, so this is also what receivers are sent)."""
    metadata = {"z": 1, "a": [1.5, None, {"é": "☃"}], "m": "\\u0000 is text"}
    task = await make_task(store, metadata=metadata, callback_events=["task.succeeded"])
    assert list(task["metadata"]) == ["z", "a", "m"] and task["metadata"] == metadata
    done = await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    assert list(done.task["metadata"]) == ["z", "a", "m"]
    got = await store.get_task(task["id"], owner="o")
    assert got == done.task and got is not None and got["callback_events"] == ["task.succeeded"]


async def test_apply_to_an_unknown_task_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await apply(store, "task_missing", Observation(status=Status.SUBMITTED, source="api"))


async def test_many_concurrent_applies_are_all_kept(store: Store) -> None:
    tasks = [await make_task(store) for _ in range(10)]
    steps = [Status.SUBMITTED, Status.IN_PROGRESS, Status.SUCCESS]

    async def drive(task_id: str) -> None:
        for i, status in enumerate(steps):
            await apply(store, task_id, Observation(status=status, source="poll", progress=i * 40))

    await asyncio.gather(*(drive(t["id"]) for t in tasks))
    for t in tasks:
        got = await store.get_task(t["id"], owner="o")
        assert got is not None and got["status"] == "SUCCESS" and got["sequence"] == 3


async def test_idempotency_keys(store: Store) -> None:
    key = IdempotencyKey(key="k", request_hash="h1")
    new = NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={})
    first, created = await store.create_task(new, idempotency=key)
    assert created
    again, created = await store.create_task(
        NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={}),
        idempotency=key,
    )
    assert not created and again == first
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
    assert len((await store.list_tasks(TaskQuery(owner="o"))).data) == 1


async def test_committed_rows_survive_reopening(backend: Backend) -> None:
    store = await backend.open()
    task = await make_task(store)
    await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    await backend.close(store)
    reopened = await backend.open()
    got = await reopened.get_task(task["id"], owner="o")
    assert got is not None and got["status"] == "SUBMITTED"
    latest = (sqlite_migrations if backend.kind == "sqlite" else postgres_db.migrations)()
    assert reopened.schema_version == max(v for v, _ in latest)  # type: ignore[attr-defined]


async def test_listing_filters_and_cursor_paging(store: Store) -> None:
    made = [await make_task(store, action="imagine" if i % 2 else "upscale") for i in range(7)]
    await apply(store, made[0]["id"], Observation(status=Status.SUBMITTED, source="api"))
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
    submitted = await store.list_tasks(TaskQuery(owner="o", status=["SUBMITTED", "MODAL"]))
    assert [t["id"] for t in submitted.data] == [made[0]["id"]]
    assert (await store.list_tasks(TaskQuery(owner="nobody"))).data == []
    assert (await store.list_tasks(TaskQuery(owner="o", provider="other"))).data == []
    middle = made[3]["created_at"]
    later = await store.list_tasks(TaskQuery(owner="o", created_after=middle))
    earlier = await store.list_tasks(TaskQuery(owner="o", created_before=middle))
    assert {t["id"] for t in later.data} | {t["id"] for t in earlier.data} == {
        t["id"] for t in made
    }
    assert not {t["id"] for t in later.data} & {t["id"] for t in earlier.data}


async def test_events_page_oldest_first(store: Store) -> None:
    task = await make_task(store)
    for progress in range(10, 60, 10):
        await apply(
            store,
            task["id"],
            Observation(status=Status.IN_PROGRESS, source="poll", progress=progress),
        )
    first = await store.list_events(task["id"], cursor=None, limit=3)
    rest = await store.list_events(task["id"], cursor=first.next_cursor, limit=3)
    assert [e["progress"] for e in first.data + rest.data] == [10, 20, 30, 40, 50]
    assert rest.next_cursor is None


# -- polls, timers, modal claims --------------------------------------------------------------


async def test_polls_are_leased_rescheduled_and_released(store: Store) -> None:
    assert await store.next_poll_due() is None
    ids = await due_tasks(store, 3)
    now = time.time()
    assert await store.backlog(now) == 3
    claims = await store.claim_due_polls(now, limit=10, lease=30)
    assert {c.task_id for c in claims} == set(ids)
    assert {c.status for c in claims} == {Status.SUBMITTED}
    assert await store.claim_due_polls(now, limit=10, lease=30) == []
    due = await store.next_poll_due()
    assert due is not None and due >= now + 29  # the lease holds them
    # The poll holding the lease gives it back with the next poll's time.
    await store.reschedule(ids[0], Schedule(next_poll_at=now - 1, attempts=2, release=True))
    [again] = await store.claim_due_polls(now, limit=10, lease=30)
    assert again.task_id == ids[0] and again.attempts == 2
    assert await store.claim_due_polls(now, limit=10, lease=30, skip=["simulator"]) == []
    # A lease runs out: a crashed worker's tasks are claimable again.
    assert len(await store.claim_due_polls(now + 31, limit=10, lease=30)) == 3


async def test_restart_reschedules_every_unfinished_task(store: Store) -> None:
    ids = await due_tasks(store, 5)
    for task_id in ids:
        await store.reschedule(task_id, Schedule(next_poll_at=time.time() + 3600))
    await apply(store, ids[0], Observation(status=Status.SUCCESS, source="poll"))
    now = time.time()
    assert await store.reschedule_unfinished(now, spread=10) == 4
    claims = await store.claim_due_polls(now + 10, limit=10, lease=30)
    assert {c.task_id for c in claims} == set(ids[1:])


async def test_timers_find_overdue_tasks_and_modal_claims(store: Store) -> None:
    limits = TimerLimits(modal=1800, submit=300, queue=7200, run=3600)
    stuck = await make_task(store)
    [queued] = await due_tasks(store, 1)
    modal = await make_task(store)
    await apply(store, modal["id"], Observation(status=Status.MODAL, source="poll", progress=15))
    now = time.time()
    assert await store.due_timers(now, limits) == []
    due = await store.due_timers(now + 7201, limits)
    assert {(d.task_id, d.status) for d in due} == {
        (stuck["id"], Status.NOT_START),
        (queued, Status.SUBMITTED),
        (modal["id"], Status.MODAL),
    }
    assert len(await store.due_timers(now + 7201, limits, limit=1)) == 1
    skipped = await store.due_timers(now + 7201, limits, skip=[stuck["id"], queued])
    assert [d.task_id for d in skipped] == [modal["id"]]
    # One modal call at a time; the timer leaves a claimed task alone while the claim lasts.
    assert await store.claim_modal(modal["id"], now)
    assert not await store.claim_modal(modal["id"], now)
    assert not await store.claim_modal(queued, now)  # not MODAL
    quick = TimerLimits(modal=10, submit=10, queue=7200, run=3600)
    assert [d.task_id for d in await store.due_timers(now + 30, quick)] == [stuck["id"]]
    await store.release_modal(modal["id"])
    assert len(await store.due_timers(now + 30, quick)) == 2
    assert await store.claim_modal(modal["id"], now)


async def test_a_modal_answer_naming_a_new_provider_task_is_followed(store: Store) -> None:
    """Seed 000's example: the modal call's answer names another task id. The task follows it
    (polled by it, found by it) and is still found by the old one; late news of the old one
    is stale."""
    task = await make_task(store, provider="simulator-apimart", action="inpaint")
    modal = Observation(status=Status.MODAL, source="api", progress=15, provider_task_id="p-old")
    await apply(store, task["id"], modal, schedule=Schedule(next_poll_at=time.time() - 1))
    [waiting] = await store.claim_due_polls(time.time(), limit=5, lease=0.01)
    assert (waiting.provider_task_id, waiting.after_modal) == ("p-old", False)
    assert await store.claim_modal(task["id"], time.time())
    call = Observation(status=Status.SUBMITTED, source="api", modal_call=True,
                       provider_task_id="p-new", dedupe_key="modal:p-new")  # fmt: skip
    applied = await apply(store, task["id"], call, schedule=Schedule(next_poll_at=time.time() - 1))
    assert applied.decision.applied and applied.task["provider_task_id"] == "p-new"
    for ref in (task["id"], "p-new", "p-old"):
        found = await store.get_task(ref, owner="o")
        assert found is not None and (found["id"], found["provider_task_id"]) == (
            task["id"],
            "p-new",
        )
    assert await store.get_task("p-old", owner="another") is None
    await asyncio.sleep(0.02)  # the first claim's lease runs out
    [claim] = await store.claim_due_polls(time.time(), limit=5, lease=30)
    assert (claim.provider_task_id, claim.after_modal) == ("p-new", True)
    late = Observation(status=Status.MODAL, source="poll", progress=15, provider_task_id="p-old")
    assert (await apply(store, task["id"], late)).decision.outcome == "stale"
    done = Observation(status=Status.SUCCESS, source="poll", progress=100, provider_task_id="p-new")
    assert (await apply(store, task["id"], done)).task["status"] == "SUCCESS"
    events = (await store.list_events(task["id"], cursor=None, limit=10)).data
    [followed] = [e for e in events if (e["detail"] or {}).get("previous_provider_task_id")]
    assert followed["detail"]["provider_task_id"] == "p-new"
    assert followed["detail"]["previous_provider_task_id"] == "p-old"
    assert [e["outcome"] for e in events] == ["applied", "applied", "stale", "applied"]


async def test_the_modal_timer_yields_to_a_claimed_modal_call(store: Store) -> None:
    task = await make_task(store, provider="simulator-apimart", action="inpaint")
    await apply(store, task["id"], Observation(status=Status.MODAL, source="api", progress=15))
    assert await store.claim_modal(task["id"], time.time())
    timer = Observation(status=Status.CANCEL, source="timer", detail="no modal call came")
    # Planned while the call is under way (the timer read the task before it was claimed):
    # the timer yields, the task stays MODAL for the call's answer.
    yielded = await apply(store, task["id"], timer)
    assert yielded.decision.outcome == "stale" and yielded.task["status"] == "MODAL"
    await store.release_modal(task["id"])  # the call failed: the timer may end the task
    ended = await apply(store, task["id"], timer)
    assert ended.decision.applied and ended.task["status"] == "CANCEL"
    assert not await store.claim_modal(task["id"], time.time())  # a call now: refused


# -- notifications ----------------------------------------------------------------------------


def result(status: str, at: float, http_status: int | None = None) -> DeliveryResult:
    error = None if status == "delivered" else f"answered {http_status}"
    return DeliveryResult(
        status=status, at=at, next_attempt_at=at + 5, http_status=http_status, error=error
    )


async def test_endpoints_lifecycle(store: Store) -> None:
    ep = await store.create_endpoint("o", "https://a.example.com/h", ["task.succeeded"], "mine")
    assert ep["secret"].startswith("whsec_") and ep["events"] == ["task.succeeded"]
    assert [e["id"] for e in await store.list_endpoints("o")] == [ep["id"]]
    assert await store.list_endpoints("o2") == []
    got = await store.get_endpoint("o", ep["id"])
    assert got is not None and "secret" not in got and got["description"] == "mine"
    assert await store.get_endpoint("o2", ep["id"]) is None
    rotated = await store.rotate_secret("o", ep["id"], time.time())
    assert rotated["secret"] != ep["secret"]
    enabled = await store.enable_endpoint("o", ep["id"])
    assert not enabled["disabled"]
    with pytest.raises(NotFound):
        await store.delete_endpoint("o2", ep["id"])
    await store.delete_endpoint("o", ep["id"])
    assert await store.get_endpoint("o", ep["id"]) is None
    for call in (store.delete_endpoint, store.enable_endpoint):
        with pytest.raises(NotFound):
            await call("o", ep["id"])
    with pytest.raises(NotFound):
        await store.rotate_secret("o", ep["id"], time.time())


async def test_deliveries_are_claimed_in_order_recorded_and_retried(store: Store) -> None:
    ep = await store.create_endpoint("o", "https://a.example.com/h", [], None)
    task = await make_task(
        store, callback_url="https://b.example.com/cb", callback_events=["task.succeeded"]
    )
    submitted = await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    assert len(submitted.deliveries) == 1  # the endpoint takes every event; the task one not
    done = await apply(store, task["id"], Observation(status=Status.SUCCESS, source="poll"))
    assert len(done.deliveries) == 2
    now = time.time()
    assert await store.next_delivery_due() is not None
    claims = await store.claim_due_deliveries(now, limit=10, lease=30, per_url=4, inflight={})
    # Per task and subscriber only the earliest is due: the endpoint's task.succeeded waits.
    assert sorted((c.subscriber, c.url) for c in claims) == [
        (ep["id"], "https://a.example.com/h"),
        ("task", "https://b.example.com/cb"),
    ]
    first = next(c for c in claims if c.subscriber == ep["id"])
    assert first.secrets == (ep["secret"],) and first.attempts == 0
    assert first.id == submitted.deliveries[0]
    assert b'"type":"task.submitted"' in first.payload
    assert next(c for c in claims if c.subscriber == "task").secrets == ()
    assert not await store.record_delivery(first, result("delivered", now, 200))
    [second] = await store.claim_due_deliveries(now, limit=10, lease=30, per_url=4, inflight={})
    assert second.subscriber == ep["id"] and b'"type":"task.succeeded"' in second.payload
    assert not await store.record_delivery(second, result("dead", now, 500))
    page = await store.list_deliveries("o", status=None, task_id=None, cursor=None, limit=2)
    assert len(page.data) == 2 and page.next_cursor is not None
    rest = await store.list_deliveries("o", status=None, task_id=None, cursor=page.next_cursor,
                                       limit=2)  # fmt: skip
    assert len(rest.data) == 1 and rest.next_cursor is None
    dead = await store.list_deliveries("o", status="dead", task_id=task["id"], cursor=None,
                                       limit=10)  # fmt: skip
    assert [d["id"] for d in dead.data] == [second.id] and dead.data[0]["attempts"] == 1
    assert dead.data[0]["last_status"] == 500 and dead.data[0]["endpoint_id"] == ep["id"]
    retried = await store.retry_delivery("o", second.id, now)
    assert retried["status"] == "pending" and retried["attempts"] == 0
    assert (await store.retry_delivery("o", second.id, now))["status"] == "pending"
    with pytest.raises(NotFound):
        await store.retry_delivery("o2", second.id, now)
    again = await store.claim_due_deliveries(now, limit=10, lease=30, per_url=4, inflight={})
    assert second.id in {c.id for c in again}
    stats = await store.stats(now)
    assert stats.tasks == {("simulator", "SUCCESS"): 1}
    assert stats.deliveries == {"pending": 2} and stats.deliveries_due == 2


async def test_a_delivery_keeps_its_last_20_attempts_and_its_signed_body(store: Store) -> None:
    ep = await store.create_endpoint("o", "https://a.example.com/h", [], None)
    task = await make_task(store)
    await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    now = time.time()
    [claim] = await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={})
    for n in range(23):  # 22 failures, then a success: the first three attempts are trimmed
        ok = n == 22
        await store.record_delivery(
            replace(claim, attempts=n),
            DeliveryResult(
                status="delivered" if ok else "pending",
                at=now + n,
                next_attempt_at=now + n + 5,
                http_status=200 if ok else 503,
                error=None if ok else "answered 503",
                duration_ms=10.0 + n,
                response="thanks" if ok else "busy\u00e9",
            ),
        )
    got = await store.get_delivery("o", claim.id)
    assert got is not None and got["status"] == "delivered" and got["next_attempt_at"] is None
    assert got["body"].encode() == claim.payload  # the exact bytes signed and sent
    history = got["attempt_history"]
    assert [a["attempt"] for a in history] == list(range(4, 24))  # oldest first, last 20
    assert history[0] == {
        "attempt": 4,
        "at": history[0]["at"],
        "duration_ms": 13.0,
        "http_status": 503,
        "response": "busy\u00e9",
        "error": "answered 503",
    }
    assert history[-1]["http_status"] == 200 and history[-1]["error"] is None
    assert history[-1]["response"] == "thanks" and history[-1]["at"].endswith("Z")
    assert await store.get_delivery("o2", claim.id) is None
    assert await store.get_delivery("o", "dlv_nope") is None
    endpoint = await store.get_endpoint("o", ep["id"])
    assert endpoint is not None
    assert (endpoint["attempts_ok"], endpoint["attempts_failed"]) == (1, 22)
    assert endpoint["success_rate"] == round(1 / 23, 4)
    assert endpoint["last_failure"] == "answered 503" and endpoint["last_failure_at"]
    [listed] = await store.list_endpoints("o")
    assert listed["success_rate"] == endpoint["success_rate"]
    fresh = await store.create_endpoint("o", "https://c.example.com/h", [], None)
    assert fresh["success_rate"] is None and fresh["last_failure"] is None
    # a pending delivery says when it is tried next
    task2 = await make_task(store)
    await apply(store, task2["id"], Observation(status=Status.SUBMITTED, source="api"))
    page = await store.list_deliveries("o", status="pending", task_id=task2["id"], cursor=None,
                                       limit=10)  # fmt: skip
    assert page.data and all(d["next_attempt_at"].endswith("Z") for d in page.data)


async def test_retry_now_makes_a_waiting_delivery_due_but_not_one_under_way(store: Store) -> None:
    await store.create_endpoint("o", "https://a.example.com/h", [], None)
    task = await make_task(store)
    await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    now = time.time()
    [claim] = await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={})
    # Leased: an attempt is under way, and a retry leaves it alone.
    assert (await store.retry_delivery("o", claim.id, now))["next_attempt_at"] is not None
    assert await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={}) == []
    failed = DeliveryResult(status="pending", at=now, next_attempt_at=now + 3600, http_status=503,
                            error="answered 503")  # fmt: skip
    await store.record_delivery(claim, failed)
    assert await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={}) == []
    retried = await store.retry_delivery("o", claim.id, now)  # "retry now": due now
    assert retried["status"] == "pending" and retried["attempts"] == 1  # counted on
    [again] = await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={})
    assert again.id == claim.id and again.attempts == 1


async def test_410_disables_the_endpoint_and_buries_its_deliveries(store: Store) -> None:
    ep = await store.create_endpoint("o", "https://a.example.com/h", [], None)
    tasks = [await make_task(store) for _ in range(2)]
    for t in tasks:
        await apply(store, t["id"], Observation(status=Status.SUBMITTED, source="api"))
    now = time.time()
    claims = await store.claim_due_deliveries(now, limit=10, lease=30, per_url=1, inflight={})
    assert len(claims) == 1  # per_url
    assert await store.record_delivery(claims[0], result("pending", now, 410))
    got = await store.get_endpoint("o", ep["id"])
    assert got is not None and got["disabled"] and "410" in got["disabled_reason"]
    dead = await store.list_deliveries("o", status="dead", task_id=None, cursor=None, limit=10)
    assert len(dead.data) == 2
    assert await store.claim_due_deliveries(now, limit=10, lease=30, per_url=4, inflight={}) == []


async def test_an_endpoint_failing_for_five_days_is_disabled(store: Store) -> None:
    await store.create_endpoint("o", "https://a.example.com/h", [], None)
    task = await make_task(store)
    await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    now = time.time()
    [claim] = await store.claim_due_deliveries(now, limit=1, lease=30, per_url=4, inflight={})
    assert not await store.record_delivery(claim, result("pending", now, 500))
    [claim] = await store.claim_due_deliveries(now + 6, limit=1, lease=30, per_url=4, inflight={})
    assert await store.record_delivery(claim, result("pending", now + 5 * 86400, 500))


async def test_changed_since_stats_and_ping(store: Store) -> None:
    before = (await make_task(store))["created_at"]
    task = await make_task(store)
    done = await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    changed = await store.changed_since(done.task["updated_at"])
    assert changed == [("o", done.task)]
    assert len(await store.changed_since(before)) == 2
    stats = await store.stats(time.time())
    assert stats.tasks == {("simulator", "NOT_START"): 1, ("simulator", "SUBMITTED"): 1}
    assert stats.polls_due == 0 and 0 <= stats.oldest_unfinished_age < 60
    await store.ping()


# -- several processes on one database --------------------------------------------------------


async def test_processes_starting_at_once_on_a_new_database_all_start(backend: Backend) -> None:
    """Web, worker and a release step start together on a database nobody migrated yet."""
    opened = await asyncio.gather(*(backend.open() for _ in range(3)), return_exceptions=True)
    failed = [r for r in opened if isinstance(r, BaseException)]
    # (SQLite: `PRAGMA journal_mode = WAL` on a new file may answer "database is locked" to one
    # opener while another switches it; sqlite.py retries it.)
    assert failed == []
    versions = {s.schema_version for s in backend.opened}  # type: ignore[attr-defined]
    assert len(versions) == 1 and versions.pop() >= 1


async def test_two_processes_never_claim_the_same_poll(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    ids = await due_tasks(a, 40)
    now = time.time()
    claims = await asyncio.gather(
        *(s.claim_due_polls(now, limit=7, lease=30) for s in (a, b, a, b, a, b, a, b))
    )
    claimed = [c.task_id for batch in claims for c in batch]
    assert len(claimed) == len(set(claimed)) == 40 and set(claimed) == set(ids)
    assert await a.claim_due_polls(now, limit=10, lease=30) == []
    # A lease runs out: a crashed process's tasks are claimable by the other.
    again = await b.claim_due_polls(now + 31, limit=100, lease=30)
    assert len(again) == 40


async def test_two_processes_never_claim_the_same_delivery(two_stores: tuple[Store, Store]) -> None:
    a, b = two_stores
    tasks = [
        await make_task(
            a, callback_url=f"https://r{i % 8}.example.com/", callback_events=["task.submitted"]
        )
        for i in range(32)
    ]
    await asyncio.gather(
        *(apply(a, t["id"], Observation(status=Status.SUBMITTED, source="api")) for t in tasks)
    )
    now = time.time()
    claims = await asyncio.gather(
        *(
            s.claim_due_deliveries(now, limit=5, lease=30, per_url=100, inflight={})
            for s in (a, b) * 4
        )
    )
    claimed = [c.id for batch in claims for c in batch]
    assert len(claimed) == len(set(claimed)) == 32


async def test_the_per_receiver_limit_holds_across_processes(
    backend: Backend, two_stores: tuple[Store, Store]
) -> None:
    if backend.kind == "sqlite":
        pytest.skip("SQLite's claim counts only the claiming process's own attempts")
    a, b = two_stores
    for _ in range(12):
        task = await make_task(
            a, callback_url="https://slow.example.com/", callback_events=["task.submitted"]
        )
        await apply(a, task["id"], Observation(status=Status.SUBMITTED, source="api"))
    now = time.time()
    claims = await asyncio.gather(
        *(
            s.claim_due_deliveries(now, limit=10, lease=30, per_url=3, inflight={})
            for s in (a, b, a, b)
        )
    )
    held = [c for batch in claims for c in batch]
    assert len(held) == 3  # in flight to one URL, whoever claimed them
    assert await b.claim_due_deliveries(now, limit=10, lease=30, per_url=3, inflight={}) == []
    # One attempt ends (in process a): one more may start, in either process.
    await a.record_delivery(held[0], result("delivered", now, 200))
    [next_one] = await b.claim_due_deliveries(now, limit=10, lease=30, per_url=3, inflight={})
    assert next_one.id not in {c.id for c in held}
    # Leases that ran out (a crashed process) no longer count.
    later = await a.claim_due_deliveries(now + 31, limit=10, lease=30, per_url=3, inflight={})
    assert len(later) == 3


async def with_retries(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """What a provider or a client does on a 503 (StoreUnavailable): try again."""
    while True:
        try:
            return await fn(*args)
        except StoreUnavailable:
            await asyncio.sleep(0.01)


async def test_concurrent_applies_on_one_task_all_land(two_stores: tuple[Store, Store]) -> None:
    """Two processes ingest observations of one task at the same moment: a loser may be told
    to retry (StoreUnavailable), and once the losers retried, every observation is recorded."""
    a, b = two_stores
    task = await make_task(a)
    await apply(a, task["id"], Observation(status=Status.IN_PROGRESS, source="api", progress=1))
    progress = list(range(2, 42))
    observations = [
        Observation(status=Status.IN_PROGRESS, source="callback", progress=p, dedupe_key=str(p))
        for p in progress
    ]
    await asyncio.gather(
        *(
            with_retries(apply, store, task["id"], obs)
            for store, obs in zip(itertools.cycle((a, b)), observations, strict=False)
        )
    )
    events = (await b.list_events(task["id"], cursor=None, limit=100)).data
    assert len(events) == 1 + len(progress)
    assert sorted(e["progress"] for e in events[1:]) == progress
    got = await a.get_task(task["id"], owner="o")
    assert got is not None and got["progress"] == max(progress)
    # Every applied change counted once: one sequence number per applied event.
    assert got["sequence"] == sum(e["outcome"] == "applied" for e in events)


async def test_one_delivery_ingested_twice_at_once_is_recorded_once(
    two_stores: tuple[Store, Store],
) -> None:
    """The same callback reaching two processes at once: one event for it, one `duplicate`
    event counting the other repeats (as if they had come one after another)."""
    a, b = two_stores
    task = await make_task(a)
    obs = Observation(status=Status.SUCCESS, source="callback", dedupe_key="same")
    await asyncio.gather(*(with_retries(apply, s, task["id"], obs) for s in (a, b) * 4))
    events = (await a.list_events(task["id"], cursor=None, limit=10)).data
    assert [(e["outcome"], e["repeats"]) for e in events] == [("applied", 0), ("duplicate", 6)]


async def test_one_idempotency_key_at_once_makes_one_task(two_stores: tuple[Store, Store]) -> None:
    """The same request with one Idempotency-Key, at once in two processes: one task; every
    caller is answered with it (the web layer answers 409 while it is NOT_START)."""
    a, b = two_stores
    key = IdempotencyKey(key="k", request_hash="h")

    async def create(store: Store) -> tuple[dict[str, Any], bool]:
        new = NewTask(id=new_id("task"), owner="o", provider="p", action="imagine", params={})
        return await store.create_task(new, idempotency=key)

    results = await asyncio.gather(*(with_retries(create, s) for s in (a, b) * 4))
    made = [task for task, created in results if created]
    assert len(made) == 1
    assert {task["id"] for task, _ in results} == {made[0]["id"]}


# -- PostgreSQL only --------------------------------------------------------------------------


async def test_a_lost_connection_is_store_unavailable_and_then_recovers(pg_url: str) -> None:
    """The server drops every connection (a restart, a failover): at most a StoreUnavailable
    (503, retried by the caller), never another error; then the pool reconnects."""
    store = PostgresStore(pg_url)
    await store.open()
    try:
        task = await make_task(store)
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                urlsplit(pg_url).path.lstrip("/"),
            )
        finally:
            await admin.close()
        assert killed >= 1
        submitted = Observation(status=Status.SUBMITTED, source="api")
        with contextlib.suppress(StoreUnavailable):  # or the pool noticed first, and reconnected
            await apply(store, task["id"], submitted)
        await apply(store, task["id"], Observation(status=Status.IN_PROGRESS, source="api"))
        got = await store.get_task(task["id"], owner="o")
        assert got is not None and got["status"] == "IN_PROGRESS"
    finally:
        await store.close()


async def test_a_statement_that_waits_too_long_is_store_unavailable(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrated = PostgresStore(pg_url)  # first, under the usual timeout: migrating takes longer
    await migrated.open()
    await migrated.close()
    monkeypatch.setattr(postgres_db, "COMMAND_TIMEOUT", 0.3)
    store = PostgresStore(pg_url)
    await store.open()
    try:
        task = await make_task(store)
        blocker = await asyncpg.connect(pg_url)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(StoreUnavailable):
                    await apply(
                        store, task["id"], Observation(status=Status.SUBMITTED, source="api")
                    )
        finally:
            await blocker.close()
        ok = await apply(store, task["id"], Observation(status=Status.SUBMITTED, source="api"))
        assert ok.decision.applied
    finally:
        await store.close()


async def test_an_unreachable_server_is_one_clear_error(pg_url: str) -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreUnavailable, match=r"cannot use PostgreSQL at 127\.0\.0\.1:1/nothing"):
        await store.open()
    missing = PostgresStore(database_url("jobhook_t_missing"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        await missing.open()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://127.0.0.1/", "no database name"),
        ("postgresql:///jobhook", "no host"),
        ("postgres://h:99999/jobhook", "does not parse"),
        ("postgresql://h/a/b", "no database name"),
        ("postgresql://u:pw@h/db x", "whitespace"),
        ("mysql://h/db", "expected sqlite:///path or postgresql://"),
    ],
)
def test_database_urls_are_checked(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        Settings.from_env({"JOBHOOK_DATABASE_URL": url}, env_file=None)
    assert "pw" not in str(caught.value)


def test_a_postgres_url_selects_the_postgres_store() -> None:
    for url in ("postgresql://u:pw@db.internal:6543/jobhook", "postgres://u@h/jobhook"):
        settings = Settings.from_env({"JOBHOOK_DATABASE_URL": url}, env_file=None)
        assert settings.postgres and settings.database_url == url
        assert isinstance(open_store(url), PostgresStore)
    assert isinstance(open_store("sqlite:///x.sqlite3"), SQLiteStore)


def test_jobhook_migrate_on_postgres(
    pg_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli._migrate(argparse.Namespace(), pg_settings) == 0
    assert cli._migrate(argparse.Namespace(), pg_settings) == 0  # again: nothing to do
    out = capsys.readouterr().out.splitlines()
    version = max(v for v, _ in postgres_db.migrations())
    assert out == [f"jobhook: schema at version {version} ({pg_settings.database_url})"] * 2
    cli._database_file(pg_settings)  # nothing to create, and the server answers
    down = replace(pg_settings, database_url="postgresql://u:hunter2@127.0.0.1:1/jobhook")
    with pytest.raises(ConfigError, match=r"^JOBHOOK_DATABASE_URL: cannot use PostgreSQL") as e:
        cli._database_file(down)
    assert "hunter2" not in str(e.value)
    assert redacted_url(down.database_url) == "postgresql://u:***@127.0.0.1:1/jobhook"


#: Named PostgreSQL statements that may read a whole table, and why.
WHOLE_TABLE = {
    "stats_tasks": "/metrics: tasks by provider and status, counted on each scrape",
    "stats_outbox": "/metrics: deliveries by status, counted on each scrape",
    "reschedule_unfinished": "once, when a worker starts: every unfinished task (a hash join)",
}
#: Not on a request or worker path: migrations, the lock they take, the probe of /readyz.
NO_PLAN = {"advisory_lock", "create_schema_version", "schema_version", "record_schema_version"}


async def test_postgres_queries_find_their_rows_through_indexes(pg_url: str) -> None:
    """EXPLAIN each named statement (and each filter of the lists) on an analyzed database of
    20,000 tasks: none reads tasks, events, outbox or endpoints end to end (WHOLE_TABLE says
    which may, and why)."""
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_url)
    try:
        now = time.time()
        for statement in filter(str.strip, FILL.split(";")):
            await conn.execute(statement, *([now] if "$1" in statement else []))
        await conn.execute("ANALYZE")
        statements = {
            name: postgres_db.Q[name]
            for name in postgres_db.Q
            if name not in NO_PLAN and not name.startswith(("list_tasks_", "list_deliveries_"))
        }
        for listing, filters in (
            ("list_tasks", ("status", "provider", "action", "created_after", "created_before")),
            ("list_deliveries", ("status", "task_id")),
        ):
            for f in filters:
                statements[f"{listing}+{f}"] = postgres_db.composed(
                    listing, f"{listing}_{f}", f"{listing}_page"
                )
        scans = {}
        for name, query in statements.items():
            prepared = await conn.prepare(query.sql)
            values = [
                _sample(p.name, n, now)
                for p, n in zip(prepared.get_parameters(), query.names, strict=True)
            ]
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query.sql, *values))
            found = re.findall(r"Seq Scan on (tasks|events|outbox|endpoints)", plan)
            if found and name.split("+")[0] not in WHOLE_TABLE:
                scans[name] = plan
        assert scans == {}
    finally:
        await conn.close()


def _sample(type_name: str, name: str, now: float) -> Any:
    """A plausible value for parameter `name` of type `type_name` (an id, a time, a key)."""
    if type_name in ("float8", "numeric"):
        return now
    if type_name in ("int4", "int8", "int2"):
        return 2
    if type_name == "bool":
        return False
    if type_name == "json":
        return "{}"
    if type_name.endswith("[]"):
        return ["SUBMITTED"] if name == "status" else []
    if name in ("owner",):
        return "o3"
    if name in ("before", "after"):
        return "task_" + "0" * 21 + "10000"
    if name in ("since", "now", "created_after", "created_before", "received_at", "updated_at"):
        return "2100-01-01T00:00:00.000Z"
    if name in ("id", "task_id", "ref", "event_id"):
        return "task_" + "0" * 21 + "12000"
    return "x"


FILL = """
INSERT INTO tasks (id, owner, provider, action, status, params, created_at, updated_at,
                   finished_at, provider_task_id, next_poll_at, status_since)
SELECT 'task_' || lpad(g::text, 26, '0'), 'o' || (g % 7), 'simulator',
       (ARRAY['imagine', 'upscale', 'zoom'])[g % 3 + 1],
       CASE WHEN g % 12 = 0 THEN 'SUBMITTED' ELSE 'SUCCESS' END, '{}',
       to_char(now() - (g || ' minutes')::interval, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       to_char(now() - (g || ' minutes')::interval, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
       CASE WHEN g % 12 = 0 THEN NULL ELSE 'x' END, 'p' || g,
       CASE WHEN g % 12 = 0 THEN $1 + g ELSE NULL END, $1 - g
FROM generate_series(1, 20000) g;
INSERT INTO events (id, task_id, source, type, outcome, from_status, received_at, dedupe_key,
                    dedupe_seq)
SELECT 'evt_' || lpad(g::text, 26, '0'), 'task_' || lpad((g % 20000 + 1)::text, 26, '0'),
       'callback', 'progress', 'applied', 'SUBMITTED', 'x', 'k' || g, 0
FROM generate_series(1, 60000) g;
INSERT INTO outbox (id, task_id, owner, subscriber, url, event_type, sequence, payload, status,
                    next_attempt_at, created_at)
SELECT 'msg_' || lpad(g::text, 26, '0'), 'task_' || lpad((g % 20000 + 1)::text, 26, '0'),
       'o' || (g % 7), 'ep_' || (g % 700), 'https://r' || (g % 50) || '.example.com/',
       'task.progress', g, '{}', CASE WHEN g % 20 = 0 THEN 'pending' ELSE 'delivered' END,
       $1 + g, 'x'
FROM generate_series(1, 20000) g;
INSERT INTO endpoints (id, owner, url, events, secret, created_at, deleted_at)
SELECT 'ep_' || g, 'o' || (g % 70), 'https://r.example.com/', '[]', 's', 'x',
       CASE WHEN g % 3 = 0 THEN 'x' END
FROM generate_series(1, 700) g;
"""
