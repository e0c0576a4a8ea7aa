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
from service.domain.ids import new_id
from service.domain.models import RAW_LIMIT, Observation, task_error
from service.domain.status import TERMINAL, Decision, Status, TaskState, decide, event_type_for
from service.domain.views import event_view, task_view
from service.errors import Conflict, NotFound, StoreUnavailable
from service.logging import log
from service.store import sqlite_outbox as outbox
from service.store.base import (
    Applied,
    DeliveryClaim,
    DeliveryResult,
    Due,
    IdempotencyKey,
    NewTask,
    Page,
    PollClaim,
    Schedule,
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


def _bounded_raw(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        text = raw if isinstance(raw, str) else orjson.dumps(raw, default=str).decode()
    except orjson.JSONEncodeError:  # kept for inspection only: never fail a write over it
        text = orjson.dumps({"unserializable": True, "head": repr(raw)[:1024]}).decode()
    if len(text) > RAW_LIMIT:
        return orjson.dumps({"truncated": True, "size": len(text), "head": text[:1024]}).decode()
    return text


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
# `seen` counts the events with the observation's dedupe key, up to 2 (the first one, and the
# `duplicate` event that counts every later replay).
_LOAD = (
    "SELECT t.*, (SELECT count(*) FROM (SELECT 1 FROM events"
    "  WHERE task_id = t.id AND dedupe_key = ? LIMIT 2)) AS seen,"
    " (SELECT json_group_array(json_array(e.id, e.url, json(e.events))) FROM endpoints e"
    "  WHERE e.owner = t.owner AND e.disabled_at IS NULL AND e.deleted_at IS NULL) AS endpoints"
    " FROM tasks t WHERE t.id = ?"
)


def _apply(
    conn: sqlite3.Connection,
    task_id: str,
    obs: Observation,
    now_epoch: float,
    schedule: Schedule | None,
) -> Applied:
    # Three statements per unit at most (load, insert event, update task) plus the outbox rows
    # of an announced change; the views are built in Python rather than read back.
    row = conn.execute(_LOAD, (obs.dedupe_key, task_id)).fetchone()
    if row is None:
        raise NotFound(f"no task {task_id}")
    now = utcnow_iso()
    state = TaskState(
        status=Status(row["status"]),
        progress=row["progress"],
        modal_entered=bool(row["modal_entered"]),
        provider_task_id=row["provider_task_id"],
    )
    if row["seen"] >= 2:
        return _repeated(conn, row, task_id, obs)
    if row["seen"]:
        decision = Decision(
            outcome="duplicate",
            status=state.status,
            progress=state.progress,
            modal_entered=state.modal_entered,
            reason="this delivery was recorded before",
        )
    else:
        decision = decide(state, obs)
    detail = {
        k: v
        for k, v in (
            ("reason", decision.reason),
            ("error", obs.error),
            ("provider_task_id", obs.provider_task_id),
            ("note", obs.detail if obs.status is not None else None),
        )
        if v
    }
    event = {
        "id": new_id("evt"),
        "task_id": task_id,
        "source": obs.source,
        "type": event_type_for(obs.status),
        "outcome": decision.outcome,
        "from_status": state.status.value,
        "to_status": obs.status.value if obs.status is not None else None,
        "progress": obs.progress,
        "received_at": now,
        "detail": _dumps(detail or None),
    }
    conn.execute(
        "INSERT INTO events (id, task_id, source, type, outcome, from_status, to_status, progress,"
        " received_at, detail, dedupe_key, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*event.values(), obs.dedupe_key, _bounded_raw(obs.raw)),
    )
    sets = _changes(row, decision, obs, now)
    if decision.applied and decision.status != state.status:
        sets["status_since"] = now_epoch
    if schedule is not None and decision.status not in TERMINAL:
        next_poll_at, attempts = schedule.pick(decision.applied)
        sets |= {"next_poll_at": next_poll_at, "poll_attempts": attempts}
        if schedule.release:  # only the poll that holds the lease gives it back
            sets["poll_lease_until"] = None
    task = dict(row)
    if sets:
        assignments = ", ".join(f"{column} = ?" for column in sets)
        cursor = conn.execute(
            f"UPDATE tasks SET {assignments} WHERE id = ? AND version = ?",
            (*sets.values(), task_id, row["version"]),
        )
        if cursor.rowcount != 1:
            raise StoreUnavailable(f"task {task_id} changed under us; retry")
        task.update(sets)
    view = task_view(task)
    deliveries: tuple[str, ...] = ()
    if decision.applied:
        deliveries = outbox.enqueue(
            conn,
            view,
            row["owner"],
            orjson.loads(row["endpoints"]),
            event_type_for(decision.status),
            now,
            now_epoch,
        )
    return Applied(
        task=view,
        event=event_view({**event, "repeats": 0}),
        decision=decision,
        from_status=state.status,
        deliveries=deliveries,
        owner=row["owner"],
    )


def _repeated(
    conn: sqlite3.Connection, row: sqlite3.Row, task_id: str, obs: Observation
) -> Applied:
    """A delivery seen twice already: its `duplicate` event counts one more repeat; no new row,
    so a replay loop cannot grow the history."""
    event = conn.execute(
        "UPDATE events SET repeats = repeats + 1 WHERE id = (SELECT id FROM events"
        " WHERE task_id = ? AND dedupe_key = ? ORDER BY id DESC LIMIT 1)"
        " RETURNING *",
        (task_id, obs.dedupe_key),
    ).fetchone()
    state = Status(row["status"])
    decision = Decision(
        outcome="duplicate",
        status=state,
        progress=row["progress"],
        modal_entered=bool(row["modal_entered"]),
        reason="this delivery was recorded before",
    )
    return Applied(
        task=task_view(row),
        event=event_view(event),
        decision=decision,
        from_status=state,
        deliveries=(),
        owner=row["owner"],
    )


def _changes(row: sqlite3.Row, decision: Decision, obs: Observation, now: str) -> dict[str, Any]:
    """The task columns this decision changes (empty when nothing does)."""
    sets: dict[str, Any] = {}
    if decision.applied:
        sets |= {
            "status": decision.status.value,
            "progress": decision.progress,
            "modal_entered": int(decision.modal_entered),
            "version": row["version"] + 1,
            "sequence": row["sequence"] + 1,
            "updated_at": now,
        }
        if obs.result is not None:
            sets["result"] = _dumps(obs.result)
        if obs.params_patch:
            sets["params"] = _dumps({**orjson.loads(row["params"] or "{}"), **obs.params_patch})
        if decision.status is Status.FAILURE or decision.status is Status.CANCEL:
            error = obs.error or task_error(
                "provider_failed" if decision.status is Status.FAILURE else "cancelled",
                "the provider reported the task ended without saying why",
            )
            sets["error"] = _dumps(error)
        if decision.status in TERMINAL:
            sets |= {"finished_at": now, "next_poll_at": None, "poll_lease_until": None}
    if obs.provider_task_id and not row["provider_task_id"] and not decision.foreign:
        sets["provider_task_id"] = obs.provider_task_id
    return sets


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

    async def apply(
        self, task_id: str, obs: Observation, *, schedule: Schedule | None = None
    ) -> Applied:
        return await self._writer.run(_apply, task_id, obs, time.time(), schedule)

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
