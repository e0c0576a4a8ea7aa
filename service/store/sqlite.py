"""The SQLite store: WAL, one group-committing writer thread, readers on their own connections.

Units of work (`_create`, `_apply`) run inside the writer's transaction; reads go through a small
pool of read-only aiosqlite connections.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from service.domain.clock import utcnow_iso
from service.domain.plan import JSON_COLUMNS, Change, OutboxRow, Snapshot, Subscriber
from service.domain.schedule import Schedule
from service.domain.status import Status
from service.domain.views import event_view, task_view
from service.errors import Conflict, NotFound, StoreUnavailable
from service.logging import log
from service.store import queries
from service.store import sqlite_outbox as outbox
from service.store.base import (
    Applied,
    DeliveryClaim,
    DeliveryResult,
    Due,
    IdempotencyKey,
    NewTask,
    Page,
    Planner,
    PollClaim,
    Stats,
    TaskQuery,
    TimerLimits,
)
from service.store.sqlite_writer import SQLiteWriter

READERS = 4
#: A modal call's claim lasts this long (longer than the provider request may take).
MODAL_CALL_LEASE = 60.0


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Raises ValueError for a cursor jobhook did not issue."""
    padded = cursor + "=" * (-len(cursor) % 4)
    value = base64.urlsafe_b64decode(padded.encode()).decode()
    if "_" not in value:
        raise ValueError("not a jobhook cursor")
    return value


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("service.store") / "sqlite_migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _migrate(conn: sqlite3.Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for version, sql in migrations():
        if version <= current:
            continue
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version VALUES ({version});\nCOMMIT;"
            )
        except sqlite3.OperationalError:
            # Another process (web and worker start together) may have migrated first.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            if (row[0] or 0) < version:
                raise
        current = version
    return int(current)


def _create(
    conn: sqlite3.Connection, new: NewTask, idem: IdempotencyKey | None
) -> tuple[dict[str, Any], bool]:
    if idem is not None:
        found = conn.execute(
            "SELECT request_hash, task_id FROM idempotency_keys WHERE owner = ? AND key = ?",
            (new.owner, idem.key),
        ).fetchone()
        if found is not None:
            if found["request_hash"] != idem.request_hash:
                raise Conflict(
                    "Idempotency-Key was already used with a different request body",
                    task_id=found["task_id"],
                )
            row = conn.execute("SELECT * FROM tasks WHERE id = ?", (found["task_id"],)).fetchone()
            return task_view(row), False
    now = utcnow_iso()
    conn.execute(
        "INSERT INTO tasks (id, owner, provider, action, status, params, parent_id, metadata,"
        " callback_url, callback_events, created_at, updated_at, status_since)"
        " VALUES (?, ?, ?, ?, 'NOT_START', ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new.id,
            new.owner,
            new.provider,
            new.action,
            _dumps(dict(new.params)),
            new.parent_id,
            _dumps(new.metadata),
            new.callback_url,
            _dumps(list(new.callback_events)),
            now,
            now,
            time.time(),
        ),
    )
    if idem is not None:
        conn.execute(
            "INSERT INTO idempotency_keys (owner, key, request_hash, task_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (new.owner, idem.key, idem.request_hash, new.id, now),
        )
    row = conn.execute("SELECT * FROM tasks WHERE id = ?", (new.id,)).fetchone()
    return task_view(row), True


# The task, whether this delivery was seen before, and the owner's live endpoints (who hears of
# an announced change): one statement, since each statement hands the GIL to the event loop.
Q = queries.load("sqlite_queries.sql")


def _apply(
    conn: sqlite3.Connection, task_id: str, dedupe_key: str | None, planner: Planner
) -> Applied:
    """Load the snapshot, let the domain plan the change, write it: one transaction."""
    row = conn.execute(Q["load_for_ingest"], {"dedupe_key": dedupe_key, "task_id": task_id})
    loaded = row.fetchone()
    if loaded is None:
        raise NotFound(f"no task {task_id}")
    snapshot = Snapshot(
        task=_decoded(loaded),
        seen=loaded["seen"],
        subscribers=[
            Subscriber(id=i, url=u, events=tuple(e or ()))
            for i, u, e in orjson.loads(loaded["endpoints"])
        ],
    )
    return _persist(conn, task_id, planner(snapshot), snapshot)


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    task = dict(row)
    for column in JSON_COLUMNS:
        if isinstance(task[column], str):
            task[column] = orjson.loads(task[column])
    return task


def _persist(conn: sqlite3.Connection, task_id: str, change: Change, snapshot: Snapshot) -> Applied:
    if change.event is None:
        event = event_view(
            conn.execute(
                Q["count_repeat"], {"task_id": task_id, "dedupe_key": change.dedupe_key}
            ).fetchone()
        )
    else:
        event = change.event
        conn.execute(
            Q["insert_event"],
            {
                **event,
                "detail": _dumps(event["detail"]),
                "dedupe_key": change.dedupe_key,
                "raw": change.raw,
            },
        )
    if change.sets:
        columns = {**snapshot.task, **change.sets}
        for column in JSON_COLUMNS:
            columns[column] = _dumps(columns[column])
        cursor = conn.execute(Q["update_task"], {**columns, "old_version": change.version})
        if cursor.rowcount != 1:
            raise StoreUnavailable(f"task {task_id} changed under us; retry")
    if change.outbox:
        conn.executemany(Q["insert_outbox"], [vars_(row) for row in change.outbox])
    return Applied(
        task=change.task,
        event=event_view(event),
        decision=change.decision,
        from_status=change.from_status,
        deliveries=tuple(row.id for row in change.outbox),
        owner=change.owner,
    )


def vars_(row: OutboxRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


def _reschedule(conn: sqlite3.Connection, task_id: str, schedule: Schedule) -> None:
    lease = ", poll_lease_until = NULL" if schedule.release else ""
    conn.execute(
        f"UPDATE tasks SET next_poll_at = ?, poll_attempts = ?{lease}"
        " WHERE id = ? AND finished_at IS NULL",
        (schedule.next_poll_at, schedule.attempts, task_id),
    )


def _claim_due_polls(
    conn: sqlite3.Connection, now: float, limit: int, lease: float, skip: list[str]
) -> list[PollClaim]:
    # One statement: the writer is this process's only writer, and BEGIN IMMEDIATE holds the
    # database lock against other processes, so a claimed row is nobody else's until the lease
    # runs out.
    rows = conn.execute(
        "UPDATE tasks SET poll_lease_until = ? WHERE id IN ("
        " SELECT id FROM tasks WHERE finished_at IS NULL AND next_poll_at <= ?"
        " AND provider_task_id IS NOT NULL"
        " AND (poll_lease_until IS NULL OR poll_lease_until <= ?)"
        f" AND provider NOT IN ({', '.join('?' * len(skip))})"
        " ORDER BY next_poll_at LIMIT ?)"
        " RETURNING id, provider, provider_task_id, status, poll_attempts",
        (now + lease, now, now, *skip, limit),
    ).fetchall()
    return [
        PollClaim(
            task_id=r["id"],
            provider=r["provider"],
            provider_task_id=r["provider_task_id"],
            status=Status(r["status"]),
            attempts=r["poll_attempts"],
        )
        for r in rows
    ]


def _claim_modal(conn: sqlite3.Connection, task_id: str, now: float) -> bool:
    cursor = conn.execute(
        "UPDATE tasks SET modal_call_at = ? WHERE id = ? AND status = 'MODAL'"
        " AND (modal_call_at IS NULL OR modal_call_at <= ?)",
        (now, task_id, now - MODAL_CALL_LEASE),
    )
    return cursor.rowcount == 1


def _reschedule_unfinished(conn: sqlite3.Connection, now: float, spread: float) -> int:
    # One statement; each task lands at a random point of the spread, so a restart with many
    # unfinished tasks does not poll them all in one burst.
    cursor = conn.execute(
        "UPDATE tasks SET next_poll_at = min(coalesce(next_poll_at, ?1),"
        " ?1 + (abs(random()) % 1000000) / 1000000.0 * ?2)"
        " WHERE finished_at IS NULL AND provider_task_id IS NOT NULL",
        (now, spread),
    )
    return cursor.rowcount


class SQLiteStore:
    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000):
        self.path = path
        self._synchronous = synchronous
        self._busy_ms = busy_timeout_ms
        self._writer = SQLiteWriter(self._connect_writer)
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self.schema_version = 0

    def _connect_writer(self) -> sqlite3.Connection:
        if self.path not in ("", ":memory:"):
            from service.config import close_to_others, private_file

            # It holds endpoint secrets: made 0600 here, in a 0700 directory if it makes that
            # too (its -wal and -shm take its mode); an existing one stops granting others.
            if not private_file(Path(self.path)):
                files = (self.path, self.path + "-wal", self.path + "-shm")
                if closed := [f for f in files if close_to_others(Path(f))]:
                    log.warning("store.permissions_tightened", files=closed)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        self.schema_version = _migrate(conn)
        return conn

    async def open(self) -> None:
        await self._writer.start()
        for _ in range(READERS):
            reader = await aiosqlite.connect(self.path)
            reader.row_factory = sqlite3.Row
            await reader.execute(f"PRAGMA busy_timeout = {int(self._busy_ms)}")
            await reader.execute("PRAGMA query_only = ON")
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)

    async def close(self) -> None:
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()
        await self._writer.stop()

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        reader = await self._readers.get()
        try:
            yield reader
        finally:
            self._readers.put_nowait(reader)

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        async with self._reader() as reader:
            try:
                return list(await reader.execute_fetchall(sql, params))
            except sqlite3.OperationalError as exc:
                log.error("store.read_failed", error=str(exc))
                raise StoreUnavailable("the store could not be read; retry") from exc

    async def create_task(
        self, new: NewTask, *, idempotency: IdempotencyKey | None = None
    ) -> tuple[dict[str, Any], bool]:
        return await self._writer.run(_create, new, idempotency)

    async def apply(self, task_id: str, *, dedupe_key: str | None, planner: Planner) -> Applied:
        return await self._writer.run(_apply, task_id, dedupe_key, planner)

    async def reschedule(self, task_id: str, schedule: Schedule) -> None:
        await self._writer.run(_reschedule, task_id, schedule)

    async def claim_due_polls(
        self, now: float, *, limit: int, lease: float, skip: list[str] | None = None
    ) -> list[PollClaim]:
        return await self._writer.run(_claim_due_polls, now, limit, lease, skip or [])

    async def next_poll_due(self) -> float | None:
        rows = await self._fetch(
            "SELECT min(max(next_poll_at, coalesce(poll_lease_until, 0))) FROM tasks"
            " WHERE finished_at IS NULL AND next_poll_at IS NOT NULL"
            " AND provider_task_id IS NOT NULL"
        )
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def due_timers(
        self, now: float, limits: TimerLimits, *, limit: int = 100, skip: Sequence[str] = ()
    ) -> list[Due]:
        rows = await self._fetch(
            "SELECT id, status FROM tasks WHERE finished_at IS NULL AND ("
            " (status = 'MODAL' AND status_since <= ?"
            "  AND (modal_call_at IS NULL OR modal_call_at <= ?))"
            " OR (status = 'NOT_START' AND status_since <= ?)"
            " OR (status = 'SUBMITTED' AND status_since <= ?)"
            " OR (status = 'IN_PROGRESS' AND status_since <= ?))"
            f" AND id NOT IN ({', '.join('?' * len(skip))}) LIMIT ?",
            (
                now - limits.modal,
                now - MODAL_CALL_LEASE,
                now - limits.submit,
                now - limits.queue,
                now - limits.run,
                *skip,
                limit,
            ),
        )
        return [Due(task_id=r["id"], status=Status(r["status"])) for r in rows]

    async def claim_modal(self, task_id: str, now: float) -> bool:
        return await self._writer.run(_claim_modal, task_id, now)

    async def release_modal(self, task_id: str) -> None:
        await self._writer.run(
            lambda conn: conn.execute(
                "UPDATE tasks SET modal_call_at = NULL WHERE id = ?", (task_id,)
            )
        )

    async def reschedule_unfinished(self, now: float, *, spread: float) -> int:
        """Poll every unfinished task soon (within `spread` s): nothing stays stuck after a
        restart, and callbacks missed while jobhook was down are caught up."""
        return await self._writer.run(_reschedule_unfinished, now, spread)

    async def get_task(self, ref: str, *, owner: str | None) -> dict[str, Any] | None:
        sql = "SELECT * FROM tasks WHERE (id = ? OR provider_task_id = ?)"
        params: tuple[Any, ...] = (ref, ref)
        if owner is not None:
            sql, params = sql + " AND owner = ?", (*params, owner)
        rows = await self._fetch(sql + " ORDER BY id DESC LIMIT 1", params)
        return task_view(rows[0]) if rows else None

    async def list_tasks(self, query: TaskQuery) -> Page:
        where, params = ["owner = ?"], [query.owner]
        if query.status:
            where.append(f"status IN ({', '.join('?' * len(query.status))})")
            params.extend(query.status)
        for column, value, op in (
            ("provider", query.provider, "="),
            ("action", query.action, "="),
            ("created_at", query.created_after, ">="),
            ("created_at", query.created_before, "<"),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        if query.cursor is not None:
            where.append("id < ?")
            params.append(decode_cursor(query.cursor))
        rows = await self._fetch(
            f"SELECT * FROM tasks WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*params, query.limit + 1),
        )
        return _page([task_view(r) for r in rows], query.limit)

    async def list_events(self, task_id: str, *, cursor: str | None, limit: int) -> Page:
        sql, params = "SELECT * FROM events WHERE task_id = ?", [task_id]
        if cursor is not None:
            sql += " AND id > ?"
            params.append(decode_cursor(cursor))
        rows = await self._fetch(sql + " ORDER BY id LIMIT ?", (*params, limit + 1))
        return _page([event_view(r) for r in rows], limit)

    async def ping(self) -> None:
        await self._writer.run(lambda conn: conn.execute("SELECT 1").fetchone())

    # -- notifications ------------------------------------------------------------------------

    async def create_endpoint(
        self, owner: str, url: str, events: list[str], description: str | None
    ) -> dict[str, Any]:
        return await self._writer.run(outbox.create_endpoint, owner, url, events, description)

    async def list_endpoints(self, owner: str) -> list[dict[str, Any]]:
        rows = await self._fetch(
            "SELECT * FROM endpoints WHERE owner = ? AND deleted_at IS NULL ORDER BY id", (owner,)
        )
        return [outbox.endpoint_view(r) for r in rows]

    async def get_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(
            "SELECT * FROM endpoints WHERE id = ? AND owner = ? AND deleted_at IS NULL",
            (endpoint_id, owner),
        )
        return outbox.endpoint_view(rows[0]) if rows else None

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> None:
        await self._writer.run(outbox.delete_endpoint, owner, endpoint_id)

    async def enable_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any]:
        return await self._writer.run(outbox.enable_endpoint, owner, endpoint_id)

    async def rotate_secret(self, owner: str, endpoint_id: str, now: float) -> dict[str, Any]:
        return await self._writer.run(outbox.rotate_secret, owner, endpoint_id, now)

    async def claim_due_deliveries(
        self, now: float, *, limit: int, lease: float, per_url: int, inflight: dict[str, int]
    ) -> list[DeliveryClaim]:
        return await self._writer.run(outbox.claim_due, now, limit, lease, per_url, inflight)

    async def record_delivery(self, claim: DeliveryClaim, result: DeliveryResult) -> bool:
        return await self._writer.run(outbox.record, claim, result)

    async def next_delivery_due(self) -> float | None:
        rows = await self._fetch(
            "SELECT min(max(next_attempt_at, coalesce(lease_until, 0))) FROM outbox"
            " WHERE status = 'pending'"
        )
        value = rows[0][0] if rows else None
        return float(value) if value is not None else None

    async def list_deliveries(
        self, owner: str, *, status: str | None, task_id: str | None, cursor: str | None, limit: int
    ) -> Page:
        sql, params = "SELECT * FROM outbox WHERE owner = ?", [owner]
        for column, value in (("status", status), ("task_id", task_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        if cursor is not None:
            sql += " AND id < ?"
            params.append(decode_cursor(cursor))
        rows = await self._fetch(sql + " ORDER BY id DESC LIMIT ?", (*params, limit + 1))
        return _page([outbox.delivery_view(r) for r in rows], limit)

    async def retry_delivery(self, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
        return await self._writer.run(outbox.retry, owner, delivery_id, now)

    async def changed_since(
        self, since: str, *, limit: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._fetch(
            "SELECT * FROM tasks WHERE updated_at >= ? ORDER BY updated_at LIMIT ?", (since, limit)
        )
        return [(r["owner"], task_view(r)) for r in rows]

    async def backlog(self, now: float) -> int:
        rows = await self._fetch(
            "SELECT (SELECT count(*) FROM tasks WHERE finished_at IS NULL AND next_poll_at <= ?1"
            " AND provider_task_id IS NOT NULL)"
            " + (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1)",
            (now,),
        )
        return int(rows[0][0])

    async def stats(self, now: float) -> Stats:
        by_status = await self._fetch(
            "SELECT provider, status, count(*) AS n FROM tasks GROUP BY provider, status"
        )
        due = await self._fetch(
            "SELECT count(*) FROM tasks WHERE finished_at IS NULL AND next_poll_at <= ?"
            " AND provider_task_id IS NOT NULL",
            (now,),
        )
        outbox_rows = await self._fetch(
            "SELECT status, count(*) AS n, sum(next_attempt_at <= ?) AS due FROM outbox"
            " WHERE status != 'delivered' GROUP BY status",
            (now,),
        )
        oldest = await self._fetch(
            "SELECT (julianday('now') - min(julianday(created_at))) * 86400 FROM tasks"
            " WHERE finished_at IS NULL"
        )
        return Stats(
            tasks={(r["provider"], r["status"]): r["n"] for r in by_status},
            polls_due=due[0][0],
            deliveries={r["status"]: r["n"] for r in outbox_rows},
            deliveries_due=sum(r["due"] or 0 for r in outbox_rows if r["status"] == "pending"),
            oldest_unfinished_age=float(oldest[0][0] or 0.0),
        )

    @property
    def batches(self) -> tuple[int, int]:
        """(batches committed, units committed): units per batch shows group commit at work."""
        return self._writer.batches, self._writer.units


def _page(items: list[dict[str, Any]], limit: int) -> Page:
    if len(items) > limit:
        return Page(data=items[:limit], next_cursor=encode_cursor(items[limit - 1]["id"]))
    return Page(data=items, next_cursor=None)
