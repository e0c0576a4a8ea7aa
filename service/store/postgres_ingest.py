"""Ingest's one transaction on PostgreSQL: load the task's snapshot with the row locked, let
the domain plan, write the Change in one statement (`write_change`). Four round trips: BEGIN,
load, write, COMMIT; concurrent ingests of one task take turns on its row lock."""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson

from service.domain.plan import JSON_COLUMNS, Change, Snapshot, Subscriber
from service.domain.views import event_view
from service.errors import NotFound, StoreUnavailable
from service.logging import log
from service.store.base import Applied, Planner
from service.store.postgres_db import Database, run


async def apply(db: Database, task_id: str, dedupe_key: str | None, planner: Planner) -> Applied:
    try:
        async with db.transaction() as conn:
            return await _apply(conn, task_id, dedupe_key, planner, lock_first=False)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != "events_dedupe":
            raise
    # Another process recorded this very delivery while we waited for the task: plan again,
    # on what it committed (see _apply).
    log.info("store.apply_replanned", task_id=task_id)
    async with db.transaction() as conn:
        return await _apply(conn, task_id, dedupe_key, planner, lock_first=True)


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _snapshot(row: Any) -> Snapshot:
    task = dict(row)
    seen, endpoints = task.pop("seen"), task.pop("endpoints")
    for column in JSON_COLUMNS:
        if isinstance(task[column], str):
            task[column] = orjson.loads(task[column])
    return Snapshot(
        task=task,
        seen=seen,
        subscribers=[
            Subscriber(id=i, url=u, events=tuple(e or ())) for i, u, e in orjson.loads(endpoints)
        ],
    )


def _change_values(task_id: str, change: Change, snapshot: Snapshot) -> dict[str, Any]:
    """The parameters of `write_change` for one planned change."""
    columns = {**snapshot.task, **change.sets}
    for column in JSON_COLUMNS:
        columns[column] = _dumps(columns[column])
    event: dict[str, Any] = change.event or {}
    rows = change.outbox
    return {
        "task_id": task_id,
        "event_id": event.get("id"),
        "source": event.get("source"),
        "type": event.get("type"),
        "outcome": event.get("outcome"),
        "from_status": event.get("from_status"),
        "to_status": event.get("to_status"),
        "event_progress": event.get("progress"),
        "received_at": event.get("received_at"),
        "detail": _dumps(event.get("detail")),
        "dedupe_key": change.dedupe_key,
        "dedupe_seq": None if change.dedupe_key is None else min(snapshot.seen, 1),
        "raw": change.raw,
        "write_task": bool(change.sets),
        "old_version": change.version,
        "status": columns["status"],
        "progress": columns["progress"],
        "modal_entered": bool(columns["modal_entered"]),
        "version": columns["version"],
        "sequence": columns["sequence"],
        "updated_at": columns["updated_at"],
        "result": columns["result"],
        "params": columns["params"],
        "error": columns["error"],
        "finished_at": columns["finished_at"],
        "provider_task_id": columns["provider_task_id"],
        "previous_provider_task_id": columns["previous_provider_task_id"],
        "status_since": columns["status_since"],
        "next_poll_at": columns["next_poll_at"],
        "poll_attempts": columns["poll_attempts"],
        "poll_lease_until": columns["poll_lease_until"],
        "outbox_ids": [r.id for r in rows],
        "outbox_task_ids": [r.task_id for r in rows],
        "outbox_owners": [r.owner for r in rows],
        "outbox_subscribers": [r.subscriber for r in rows],
        "outbox_urls": [r.url for r in rows],
        "outbox_event_types": [r.event_type for r in rows],
        "outbox_sequences": [r.sequence for r in rows],
        "outbox_payloads": [r.payload for r in rows],
        "outbox_next_attempt_ats": [r.next_attempt_at for r in rows],
        "outbox_created_ats": [r.created_at for r in rows],
        "notice": notice(change),
    }


def notice(change: Change) -> str | None:
    """What other processes hear of this change (`LISTEN jobhook`): the task that changed (id,
    owner, sequence: its long-polls and streams), a poll's new due time (the poller), outbox
    rows written (the deliverer). None when nothing worth waking anyone happened."""
    said: dict[str, Any] = {}
    if change.decision.applied:
        said["t"] = [change.task["id"], change.owner, change.task["sequence"]]
    if change.sets.get("next_poll_at") is not None:
        said["p"] = change.sets["next_poll_at"]
    if change.outbox:
        said["d"] = 1
    return orjson.dumps(said).decode() if said else None


async def _apply(
    conn: Any, task_id: str, dedupe_key: str | None, planner: Planner, *, lock_first: bool
) -> Applied:
    """Load the snapshot (the task row locked), let the domain plan, write the change.

    The load locks the row and reads in one statement, so when it had to wait for the lock, its
    reads are as of before the wait: the row itself is re-read at its latest version, but an
    event another transaction recorded meanwhile is not seen. The only fact that matters there
    is whether this delivery was recorded (`seen`), and the events_dedupe index refuses to
    record it twice: the caller then runs this again with `lock_first`, whose load starts after
    the lock is held and so sees everything committed before."""
    if lock_first:
        await run(conn, "lock_task", id=task_id)
    loaded = await run(conn, "load_for_ingest", task_id=task_id, dedupe_key=dedupe_key)
    if loaded is None:
        raise NotFound(f"no task {task_id}")
    snapshot = _snapshot(loaded)
    change = planner(snapshot)
    written = await run(conn, "write_change", **_change_values(task_id, change, snapshot))
    if change.sets and written["updated"] != 1:
        raise StoreUnavailable(f"task {task_id} changed under us; retry")
    return Applied(
        task=change.task,
        event=event_view(change.event if change.event is not None else written),
        decision=change.decision,
        from_status=change.from_status,
        deliveries=tuple(row.id for row in change.outbox),
        owner=change.owner,
    )
