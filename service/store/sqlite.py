"""The SQLite store: WAL, one group-committing writer thread, readers on their own connections.

Units of work (`_create`, `_apply`) run inside the writer's transaction; reads go through a small
pool of read-only aiosqlite connections. Every statement is a named block of sqlite_queries.sql.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from service.domain.clock import utcnow_iso
from service.domain.plan import JSON_COLUMNS, Change, OutboxRow, Snapshot, Subscriber
from service.domain.queue import admits_now, claimable
from service.domain.schedule import Schedule
from service.domain.status import Status
from service.domain.views import event_view, task_view
from service.errors import Conflict, NotFound, StoreUnavailable
from service.feed import ChangeFeed
from service.hub import Hub
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
    QueueDepth,
    Stats,
    SubmitClaim,
    TaskQuery,
    TimerLimits,
)
from service.store.common import (
    ATTEMPTS_KEPT,
    MODAL_CALL_LEASE,
    decode_cursor,
    delivery_detail,
    delivery_view,
    encode_cursor,
    endpoint_view,
    submit_claim,
)
from service.store.sqlite_writer import SQLiteWriter

READERS = 4
#: The store's named statements (service/store/sqlite_queries.sql).
Q = queries.load("sqlite_queries.sql")


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def migrations() -> list[tuple[int, str]]:
    folder = resources.files("service.store") / "sqlite_migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def _migrate(conn: sqlite3.Connection) -> int:
    conn.execute(Q["create_schema_version"])
    row = conn.execute(Q["schema_version"]).fetchone()
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
            row = conn.execute(Q["schema_version"]).fetchone()
            if (row[0] or 0) < version:
                raise
        current = version
    return int(current)


def _create(
    conn: sqlite3.Connection, new: NewTask, idem: IdempotencyKey | None
) -> tuple[dict[str, Any], bool]:
    if idem is not None:
        found = conn.execute(
            Q["find_idempotency_key"], {"owner": new.owner, "key": idem.key}
        ).fetchone()
        if found is not None:
            if found["request_hash"] != idem.request_hash:
                raise Conflict(
                    "Idempotency-Key was already used with a different request body",
                    task_id=found["task_id"],
                )
            row = conn.execute(Q["task_by_id"], {"id": found["task_id"]}).fetchone()
            return task_view(row), False
    now = utcnow_iso()
    conn.execute(
        Q["insert_task"],
        {
            "id": new.id,
            "owner": new.owner,
            "provider": new.provider,
            "action": new.action,
            "params": _dumps(dict(new.params)),
            "parent_id": new.parent_id,
            "metadata": _dumps(new.metadata),
            "callback_url": new.callback_url,
            "callback_events": _dumps(list(new.callback_events)),
            "created_at": now,
            "status_since": time.time(),
        },
    )
    if idem is not None:
        conn.execute(
            Q["insert_idempotency_key"],
            {
                "owner": new.owner,
                "key": idem.key,
                "request_hash": idem.request_hash,
                "task_id": new.id,
                "created_at": now,
            },
        )
    row = conn.execute(Q["task_by_id"], {"id": new.id}).fetchone()
    return task_view(row), True


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
    conn.execute(
        Q["reschedule_poll"],
        {
            "id": task_id,
            "next_poll_at": schedule.next_poll_at,
            "attempts": schedule.attempts,
            "release": schedule.release,
        },
    )


def _claim_due_polls(
    conn: sqlite3.Connection, now: float, limit: int, lease: float, skip: list[str]
) -> list[PollClaim]:
    rows = conn.execute(
        Q["claim_due_polls"],
        {"now": now, "lease_until": now + lease, "skip": _dumps(skip), "limit": limit},
    ).fetchall()
    return [
        PollClaim(
            task_id=r["id"],
            provider=r["provider"],
            provider_task_id=r["provider_task_id"],
            status=Status(r["status"]),
            attempts=r["poll_attempts"],
            due_at=r["next_poll_at"],
            after_modal=bool(r["modal_entered"]) and r["status"] != Status.MODAL,
        )
        for r in rows
    ]


def _room_params(provider: str, now: float, cap: int | None, most: int) -> dict[str, Any]:
    return {"provider": provider, "now": now, "capped": cap is not None, "most": most}


def _enqueue(
    conn: sqlite3.Connection,
    task_id: str,
    provider: str,
    owner: str,
    request: str,
    now: float,
    cap: int | None,
    lease: float,
    send_now: bool,
) -> bool:
    room = conn.execute(Q["queue_room"], _room_params(provider, now, cap, 1)).fetchone()
    admitted = admits_now(room, cap, send_now=send_now)
    conn.execute(
        Q["queue_insert"],
        {
            "task_id": task_id,
            "provider": provider,
            "owner": owner,
            "now": now,
            "lease_until": now + lease if admitted else None,
            # A task sent at once keeps nothing here (base64 images included): its request
            # is kept only if it must wait after all (release_submission)
            "request": "{}" if admitted else request,
        },
    )
    return admitted


def _claim_submissions(
    conn: sqlite3.Connection, provider: str, now: float, cap: int | None, limit: int, lease: float
) -> list[SubmitClaim]:
    room = conn.execute(Q["queue_room"], _room_params(provider, now, cap, limit)).fetchone()
    claims: list[SubmitClaim] = []
    for n in range(claimable(room, cap, limit)):
        found = conn.execute(Q["queue_next"], {"provider": provider, "now": now}).fetchone()
        if found is None:
            break
        reclaimed = found["lease_until"] is not None
        row = conn.execute(
            Q["queue_claim"],
            {"task_id": found["task_id"], "lease_until": now + lease, "reclaimed": int(reclaimed)},
        ).fetchone()
        conn.execute(
            Q["queue_turn"],
            {"provider": provider, "owner": found["owner"], "served_at": now + n * 1e-6},
        )
        claims.append(submit_claim(row, reclaimed=reclaimed))
    return claims


def _claim_modal(conn: sqlite3.Connection, task_id: str, now: float) -> bool:
    cursor = conn.execute(
        Q["claim_modal"],
        {"id": task_id, "now": now, "claimed_before": now - MODAL_CALL_LEASE},
    )
    return cursor.rowcount == 1


def _reschedule_unfinished(conn: sqlite3.Connection, now: float, spread: float) -> int:
    return conn.execute(Q["reschedule_unfinished"], {"now": now, "spread": spread}).rowcount


def _switch_to_wal(conn: sqlite3.Connection, tries: int = 50) -> None:
    """WAL mode, retried: processes opening one new file at once (web and worker starting
    together) may find it locked by the other's switch, which the busy timeout does not cover."""
    for attempt in range(tries):
        try:
            conn.execute(Q["wal"])
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class SQLiteStore:
    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000):
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = path
        self._synchronous = Q[f"synchronous_{synchronous.lower()}"]
        self._timeout = busy_timeout_ms / 1000
        self._writer = SQLiteWriter(self._connect_writer)
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        #: point reads on the event loop's own thread (see `_point`)
        self._inline: sqlite3.Connection | None = None
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
        conn = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        _switch_to_wal(conn)
        conn.execute(self._synchronous)
        conn.execute(Q["foreign_keys"])
        self.schema_version = _migrate(conn)
        return conn

    async def open(self) -> None:
        await self._writer.start()
        for _ in range(READERS):
            reader = await aiosqlite.connect(self.path, timeout=self._timeout)
            reader.row_factory = sqlite3.Row
            await reader.execute(Q["query_only"])
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)
        # Never waits for a lock: a point read that would is done by a pooled reader instead.
        inline = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        inline.row_factory = sqlite3.Row
        inline.execute(Q["query_only"])
        self._inline = inline

    #: only this process writes (one writer per file): nothing to follow but the change feed
    shared = False

    async def follow(self, hub: Hub, ready: asyncio.Event) -> None:
        """Until cancelled: another process's commits (`jobhook worker` beside `serve
        --no-workers`) read once a second and published on `hub`."""
        feed = ChangeFeed(self, hub)
        ready.set()
        await feed.run()

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
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

    async def _fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[sqlite3.Row]:
        async with self._reader() as reader:
            try:
                return list(await reader.execute_fetchall(sql, params or {}))
            except sqlite3.OperationalError as exc:
                log.error("store.read_failed", error=str(exc))
                raise StoreUnavailable("the store could not be read; retry") from exc

    async def _value(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """The one value a named query answers."""
        rows = await self._fetch(Q[name], params)
        return rows[0][0] if rows else None

    async def _point(self, sql: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
        """A read of a few rows through an index, on the event loop's thread: ~20 us of SQLite,
        less than the hop to a reader thread and back costs. In WAL mode a reader waits for no
        writer; should it meet a lock anyway (a checkpoint's, a recovery's), it does not wait
        on the loop but goes to a pooled reader."""
        if self._inline is not None:
            try:
                return self._inline.execute(sql, params).fetchall()
            except sqlite3.ProgrammingError:
                pass  # called from another thread than the one that opened the store
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    log.error("store.read_failed", error=str(exc))
                    raise StoreUnavailable("the store could not be read; retry") from exc
        return await self._fetch(sql, params)

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
        [[value]] = await self._point(Q["next_poll_due"], {})
        return float(value) if value is not None else None

    async def due_timers(
        self, now: float, limits: TimerLimits, *, limit: int = 100, skip: Sequence[str] = ()
    ) -> list[Due]:
        rows = await self._fetch(
            Q["due_timers"],
            {
                "modal_since": now - limits.modal,
                "modal_call_before": now - MODAL_CALL_LEASE,
                "submit_since": now - limits.submit,
                "queue_since": now - limits.queue,
                "run_since": now - limits.run,
                "skip": _dumps(list(skip)),
                "limit": limit,
            },
        )
        return [Due(task_id=r["id"], status=Status(r["status"])) for r in rows]

    async def claim_modal(self, task_id: str, now: float) -> bool:
        return await self._writer.run(_claim_modal, task_id, now)

    async def release_modal(self, task_id: str) -> None:
        await self._writer.run(lambda conn: conn.execute(Q["release_modal"], {"id": task_id}))

    async def reschedule_unfinished(self, now: float, *, spread: float) -> int:
        """Poll every unfinished task soon (within `spread` s): nothing stays stuck after a
        restart, and callbacks missed while jobhook was down are caught up."""
        return await self._writer.run(_reschedule_unfinished, now, spread)

    async def enqueue(
        self,
        task_id: str,
        *,
        provider: str,
        owner: str,
        request: Mapping[str, Any],
        now: float,
        cap: int | None,
        lease: float,
        send_now: bool = True,
    ) -> bool:
        return await self._writer.run(
            _enqueue,
            task_id,
            provider,
            owner,
            orjson.dumps(request).decode(),
            now,
            cap,
            lease,
            send_now,
        )

    async def claim_submissions(
        self, provider: str, now: float, *, cap: int | None, limit: int, lease: float
    ) -> list[SubmitClaim]:
        return await self._writer.run(_claim_submissions, provider, now, cap, limit, lease)

    async def release_submission(
        self,
        task_id: str,
        *,
        due_at: float,
        last_answer: str | None,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        values = {
            "task_id": task_id,
            "due_at": due_at,
            "last_answer": last_answer,
            "request": None if request is None else orjson.dumps(request).decode(),
        }
        await self._writer.run(lambda conn: conn.execute(Q["queue_release"], values))

    async def take_submission(self, task_id: str, now: float, *, lease: float) -> bool:
        values = {"task_id": task_id, "now": now, "lease_until": now + lease}
        cursor = await self._writer.run(lambda conn: conn.execute(Q["queue_take"], values))
        return bool(cursor.rowcount == 1)

    async def finish_submission(self, task_id: str) -> None:
        await self._writer.run(lambda conn: conn.execute(Q["queue_delete"], {"task_id": task_id}))

    async def submission(self, task_id: str) -> SubmitClaim | None:
        rows = await self._fetch(Q["queue_row"], {"task_id": task_id})
        return submit_claim(rows[0], reclaimed=False) if rows else None

    async def queued_for(self, owner: str, provider: str) -> int:
        return int(await self._value("queue_owner_depth", {"owner": owner, "provider": provider}))

    async def queue_depths(self, now: float) -> dict[str, QueueDepth]:
        rows = await self._fetch(Q["queue_stats"], {"now": now})
        return {
            r["provider"]: QueueDepth(
                waiting=int(r["waiting"] or 0), sending=int(r["sending"] or 0), oldest=r["oldest"]
            )
            for r in rows
        }

    async def get_task(self, ref: str, *, owner: str | None) -> dict[str, Any] | None:
        rows = await self._point(Q["get_task"], {"ref": ref, "owner": owner})
        return task_view(rows[0]) if rows else None

    async def list_tasks(self, query: TaskQuery) -> Page:
        rows = await self._fetch(*list_tasks_statement(query))
        return _page([task_view(r) for r in rows], query.limit)

    async def list_events(self, task_id: str, *, cursor: str | None, limit: int) -> Page:
        after = "" if cursor is None else decode_cursor(cursor)  # '' comes before every id
        rows = await self._fetch(
            Q["list_events"], {"task_id": task_id, "after": after, "limit": limit + 1}
        )
        return _page([event_view(r) for r in rows], limit)

    async def ping(self) -> None:
        await self._writer.run(lambda conn: conn.execute(Q["ping"]).fetchone())

    # -- notifications ------------------------------------------------------------------------

    async def create_endpoint(
        self, owner: str, url: str, events: list[str], description: str | None
    ) -> dict[str, Any]:
        return await self._writer.run(outbox.create_endpoint, owner, url, events, description)

    async def list_endpoints(self, owner: str) -> list[dict[str, Any]]:
        rows = await self._fetch(Q["list_endpoints"], {"owner": owner})
        return [endpoint_view(r) for r in rows]

    async def get_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any] | None:
        rows = await self._point(Q["live_endpoint"], {"id": endpoint_id, "owner": owner})
        return endpoint_view(rows[0]) if rows else None

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
        [[value]] = await self._point(Q["next_delivery_due"], {})
        return float(value) if value is not None else None

    async def list_deliveries(
        self, owner: str, *, status: str | None, task_id: str | None, cursor: str | None, limit: int
    ) -> Page:
        rows = await self._fetch(
            *list_deliveries_statement(
                owner, status=status, task_id=task_id, cursor=cursor, limit=limit
            )
        )
        return _page([delivery_view(r) for r in rows], limit)

    async def retry_delivery(self, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
        return await self._writer.run(outbox.retry, owner, delivery_id, now)

    async def get_delivery(self, owner: str, delivery_id: str) -> dict[str, Any] | None:
        rows = await self._fetch(Q["delivery_by_id"], {"id": delivery_id, "owner": owner})
        if not rows:
            return None
        attempts = await self._fetch(
            Q["delivery_attempts"], {"id": delivery_id, "keep": ATTEMPTS_KEPT}
        )
        return delivery_detail(rows[0], attempts)

    async def changed_since(
        self, since: str, *, limit: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = await self._fetch(Q["changed_since"], {"since": since, "limit": limit})
        return [(r["owner"], task_view(r)) for r in rows]

    async def backlog(self, now: float) -> int:
        return int(await self._value("backlog", {"now": now}))

    async def stats(self, now: float) -> Stats:
        by_status = await self._fetch(Q["stats_tasks"])
        deliveries = await self._fetch(Q["stats_deliveries"], {"now": now})
        return Stats(
            tasks={(r["provider"], r["status"]): r["n"] for r in by_status},
            polls_due=await self._value("stats_polls_due", {"now": now}),
            deliveries={r["status"]: r["n"] for r in deliveries},
            deliveries_due=sum(r["due"] or 0 for r in deliveries),
            oldest_unfinished_age=float(await self._value("oldest_unfinished") or 0.0),
        )

    @property
    def batches(self) -> tuple[int, int]:
        """(batches committed, units committed): units per batch shows group commit at work."""
        return self._writer.batches, self._writer.units


def list_tasks_statement(query: TaskQuery) -> tuple[str, dict[str, Any]]:
    """A task list's SQL and parameters (one status is a plain `=`, which its index serves)."""
    statuses = list(query.status)
    return _composed(
        "list_tasks",
        {"owner": query.owner, "limit": query.limit + 1},
        status=statuses[0] if len(statuses) == 1 else None,
        statuses=_dumps(statuses) if len(statuses) > 1 else None,
        provider=query.provider,
        action=query.action,
        created_after=query.created_after,
        created_before=query.created_before,
        cursor=None if query.cursor is None else decode_cursor(query.cursor),
    )


def list_deliveries_statement(
    owner: str, *, status: str | None, task_id: str | None, cursor: str | None, limit: int
) -> tuple[str, dict[str, Any]]:
    return _composed(
        "list_deliveries",
        {"owner": owner, "limit": limit + 1},
        status=status,
        task_id=task_id,
        cursor=None if cursor is None else decode_cursor(cursor),
    )


def _composed(name: str, params: dict[str, Any], **filters: Any) -> tuple[str, dict[str, Any]]:
    """The one place SQL is composed, for the lists' optional filters: the named head, the
    `<name>_<filter>` fragment of each filter given (not None), then `<name>_end`."""
    given = {key: value for key, value in filters.items() if value is not None}
    fragments = [name, *(f"{name}_{key}" for key in given), f"{name}_end"]
    return "\n".join(Q[fragment] for fragment in fragments), {**params, **given}


def _page(items: list[dict[str, Any]], limit: int) -> Page:
    if len(items) > limit:
        return Page(data=items[:limit], next_cursor=encode_cursor(items[limit - 1]["id"]))
    return Page(data=items, next_cursor=None)
