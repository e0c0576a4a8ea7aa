"""The PostgreSQL store (asyncpg): one database for several web and worker processes.

The same contract as the SQLite store, and the same views. Each method is one statement (one
round trip) except `apply` (BEGIN, load the task FOR NO KEY UPDATE, plan, write, COMMIT) and the
deliverer's claims; poll and delivery leases are taken with SKIP LOCKED, so no two processes
hold the same row. SQL lives in postgres_queries.sql and postgres_db.py runs it; ingest's
transaction is postgres_ingest.py, notifications postgres_outbox.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from service.domain.clock import utcnow_iso
from service.domain.queue import admits_now, claimable
from service.domain.schedule import Schedule
from service.domain.status import Status
from service.domain.views import event_view, task_view
from service.errors import Conflict, StoreUnavailable, ValidationFailed
from service.hub import Hub
from service.store import postgres_ingest as ingest
from service.store import postgres_notify
from service.store import postgres_outbox as outbox
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
from service.store.postgres_db import POOL_SIZE, Database, Query, composed, run

#: Above every id (ids are ASCII, compared bytewise): the cursor of a first page.
_TOP = "\U0010ffff"


def _dumps(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _cursor(cursor: str | None, default: str) -> str:
    if cursor is None:
        return default
    value = decode_cursor(cursor)
    if "\x00" in value:  # PostgreSQL text cannot hold it; no jobhook id does
        raise ValidationFailed("cursor", "not a cursor jobhook issued")
    return value


def _listing(name: str, filters: dict[str, Any]) -> Query:
    """The list statement `name` with a block for each filter given (see list_tasks)."""
    given = (f"{name}_{f}" for f, value in filters.items() if value is not None)
    return composed(name, *given, f"{name}_page")


def _page(items: list[dict[str, Any]], limit: int) -> Page:
    if len(items) > limit:
        return Page(data=items[:limit], next_cursor=encode_cursor(items[limit - 1]["id"]))
    return Page(data=items, next_cursor=None)


def _poll_claim(r: Any) -> PollClaim:
    return PollClaim(
        task_id=r["id"],
        provider=r["provider"],
        provider_task_id=r["provider_task_id"],
        status=Status(r["status"]),
        attempts=r["poll_attempts"],
        due_at=r["next_poll_at"],
        after_modal=bool(r["modal_entered"]) and r["status"] != Status.MODAL,
    )


class PostgresStore:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self.db = Database(url, pool_size=pool_size)
        self.schema_version = 0

    async def open(self) -> None:
        self.schema_version = await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    #: other processes write this database too: `follow` brings their commits here
    shared = True

    async def follow(self, hub: Hub, ready: asyncio.Event) -> None:
        """Until cancelled: other processes' commits as wake-ups on `hub` (LISTEN/NOTIFY);
        `ready` is set once listening."""
        await postgres_notify.follow(self.url, self, hub, ready)

    async def create_task(
        self, new: NewTask, *, idempotency: IdempotencyKey | None = None
    ) -> tuple[dict[str, Any], bool]:
        values = {
            "id": new.id,
            "owner": new.owner,
            "provider": new.provider,
            "action": new.action,
            "params": _dumps(dict(new.params)),
            "parent_id": new.parent_id,
            "metadata": _dumps(new.metadata),
            "callback_url": new.callback_url,
            "callback_events": _dumps(list(new.callback_events)),
            "now": utcnow_iso(),
            "now_epoch": time.time(),
        }
        if idempotency is None:
            return task_view(await self.db.fetchrow("insert_task", **values)), True
        row = await self.db.fetchrow(
            "insert_task_once", **values, key=idempotency.key, request_hash=idempotency.request_hash
        )
        if row is not None:
            return task_view(row), True
        # The key was claimed first, perhaps a moment ago by another process: its task.
        found = await self.db.fetchrow("idempotent_task", owner=new.owner, key=idempotency.key)
        if found is None:
            raise StoreUnavailable("the idempotency key is being used; retry")
        if found["request_hash"] != idempotency.request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request body",
                task_id=found["id"],
            )
        return task_view(found), False

    async def apply(self, task_id: str, *, dedupe_key: str | None, planner: Planner) -> Applied:
        return await ingest.apply(self.db, task_id, dedupe_key, planner)

    async def reschedule(self, task_id: str, schedule: Schedule) -> None:
        await self.db.execute(
            "reschedule",
            id=task_id,
            next_poll_at=schedule.next_poll_at,
            attempts=schedule.attempts,
            release=schedule.release,
        )

    async def claim_due_polls(
        self, now: float, *, limit: int, lease: float, skip: list[str] | None = None
    ) -> list[PollClaim]:
        rows = await self.db.fetch(
            "claim_due_polls", now=now, lease_until=now + lease, limit=limit, skip=skip or []
        )
        return [_poll_claim(r) for r in rows]

    async def next_poll_due(self) -> float | None:
        value = await self.db.fetchval("next_poll_due")
        return float(value) if value is not None else None

    async def due_timers(
        self, now: float, limits: TimerLimits, *, limit: int = 100, skip: Sequence[str] = ()
    ) -> list[Due]:
        rows = await self.db.fetch(
            "due_timers",
            modal_before=now - limits.modal,
            modal_call_before=now - MODAL_CALL_LEASE,
            submit_before=now - limits.submit,
            queue_before=now - limits.queue,
            run_before=now - limits.run,
            skip=list(skip),
            limit=limit,
        )
        return [Due(task_id=r["id"], status=Status(r["status"])) for r in rows]

    async def claim_modal(self, task_id: str, now: float) -> bool:
        claimed = await self.db.execute(
            "claim_modal", id=task_id, now=now, claimed_before=now - MODAL_CALL_LEASE
        )
        return claimed == 1

    async def release_modal(self, task_id: str) -> None:
        await self.db.execute("release_modal", id=task_id)

    async def reschedule_unfinished(self, now: float, *, spread: float) -> int:
        """Poll every unfinished task soon (within `spread` s): nothing stays stuck after a
        restart, and callbacks missed while jobhook was down are caught up."""
        return await self.db.execute("reschedule_unfinished", now=now, spread=spread)

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
        async with self.db.transaction() as conn:
            await run(conn, "queue_lock", provider=provider)
            room = await run(
                conn, "queue_room", provider=provider, now=now, capped=cap is not None, most=1
            )
            admitted = admits_now(room, cap, send_now=send_now)
            await run(
                conn,
                "queue_insert",
                task_id=task_id,
                provider=provider,
                owner=owner,
                now=now,
                lease_until=now + lease if admitted else None,
                # sent at once: nothing kept (see the SQLite store)
                request="{}" if admitted else orjson.dumps(request).decode(),
            )
        return bool(admitted)

    async def claim_submissions(
        self, provider: str, now: float, *, cap: int | None, limit: int, lease: float
    ) -> list[SubmitClaim]:
        claims: list[SubmitClaim] = []
        async with self.db.transaction() as conn:
            await run(conn, "queue_lock", provider=provider)
            room = await run(
                conn, "queue_room", provider=provider, now=now, capped=cap is not None, most=limit
            )
            for n in range(claimable(room, cap, limit)):
                found = await run(conn, "queue_next", provider=provider, now=now)
                if found is None:
                    break
                reclaimed = found["lease_until"] is not None
                row = await run(
                    conn,
                    "queue_claim",
                    task_id=found["task_id"],
                    lease_until=now + lease,
                    reclaimed=int(reclaimed),
                )
                await run(
                    conn,
                    "queue_turn",
                    provider=provider,
                    owner=found["owner"],
                    served_at=now + n * 1e-6,
                )
                claims.append(submit_claim(row, reclaimed=reclaimed))
        return claims

    async def release_submission(
        self,
        task_id: str,
        *,
        due_at: float,
        last_answer: str | None,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        await self.db.execute(
            "queue_release",
            task_id=task_id,
            due_at=due_at,
            last_answer=last_answer,
            request=None if request is None else orjson.dumps(request).decode(),
        )

    async def take_submission(self, task_id: str, now: float, *, lease: float) -> bool:
        taken = await self.db.execute(
            "queue_take", task_id=task_id, now=now, lease_until=now + lease
        )
        return taken == 1

    async def finish_submission(self, task_id: str) -> None:
        await self.db.execute("queue_delete", task_id=task_id)

    async def submission(self, task_id: str) -> SubmitClaim | None:
        row = await self.db.fetchrow("queue_row", task_id=task_id)
        return submit_claim(row, reclaimed=False) if row is not None else None

    async def queued_for(self, owner: str, provider: str) -> int:
        return int(await self.db.fetchval("queue_owner_depth", owner=owner, provider=provider))

    async def queue_depths(self, now: float) -> dict[str, QueueDepth]:
        rows = await self.db.fetch("queue_stats", now=now)
        return {
            r["provider"]: QueueDepth(
                waiting=int(r["waiting"]), sending=int(r["sending"]), oldest=r["oldest"]
            )
            for r in rows
        }

    async def get_task(self, ref: str, *, owner: str | None) -> dict[str, Any] | None:
        if "\x00" in ref:  # no task has one, and PostgreSQL text cannot hold it
            return None
        row = await self.db.fetchrow("get_task", ref=ref, owner=owner)
        return task_view(row) if row is not None else None

    async def list_tasks(self, query: TaskQuery) -> Page:
        filters = {
            "status": list(query.status) or None,
            "provider": query.provider,
            "action": query.action,
            "created_after": query.created_after,
            "created_before": query.created_before,
        }
        rows = await self.db.fetch(
            _listing("list_tasks", filters),
            owner=query.owner,
            before=_cursor(query.cursor, _TOP),
            limit=query.limit + 1,
            **filters,
        )
        return _page([task_view(r) for r in rows], query.limit)

    async def list_events(self, task_id: str, *, cursor: str | None, limit: int) -> Page:
        rows = await self.db.fetch(
            "list_events", task_id=task_id, after=_cursor(cursor, ""), limit=limit + 1
        )
        return _page([event_view(r) for r in rows], limit)

    async def ping(self) -> None:
        if not await self.db.fetchval("writable"):
            raise StoreUnavailable("the database is read-only (a replica?)")

    # -- notifications ------------------------------------------------------------------------

    async def create_endpoint(
        self, owner: str, url: str, events: list[str], description: str | None
    ) -> dict[str, Any]:
        return await outbox.create_endpoint(self.db, owner, url, events, description)

    async def list_endpoints(self, owner: str) -> list[dict[str, Any]]:
        return [endpoint_view(r) for r in await self.db.fetch("list_endpoints", owner=owner)]

    async def get_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("get_endpoint", id=endpoint_id, owner=owner)
        return endpoint_view(row) if row is not None else None

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> None:
        await outbox.delete_endpoint(self.db, owner, endpoint_id)

    async def enable_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any]:
        return await outbox.enable_endpoint(self.db, owner, endpoint_id)

    async def rotate_secret(self, owner: str, endpoint_id: str, now: float) -> dict[str, Any]:
        return await outbox.rotate_secret(self.db, owner, endpoint_id, now)

    async def claim_due_deliveries(
        self, now: float, *, limit: int, lease: float, per_url: int, inflight: dict[str, int]
    ) -> list[DeliveryClaim]:
        return await outbox.claim_due(self.db, now, limit, lease, per_url, inflight)

    async def record_delivery(self, claim: DeliveryClaim, result: DeliveryResult) -> bool:
        return await outbox.record(self.db, claim, result)

    async def next_delivery_due(self) -> float | None:
        value = await self.db.fetchval("next_delivery_due")
        return float(value) if value is not None else None

    async def list_deliveries(
        self, owner: str, *, status: str | None, task_id: str | None, cursor: str | None, limit: int
    ) -> Page:
        filters = {"status": status, "task_id": task_id}
        rows = await self.db.fetch(
            _listing("list_deliveries", filters),
            owner=owner,
            before=_cursor(cursor, _TOP),
            limit=limit + 1,
            **filters,
        )
        return _page([delivery_view(r) for r in rows], limit)

    async def retry_delivery(self, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
        return await outbox.retry(self.db, owner, delivery_id, now)

    async def get_delivery(self, owner: str, delivery_id: str) -> dict[str, Any] | None:
        row = await self.db.fetchrow("delivery_by_id", id=delivery_id, owner=owner)
        if row is None:
            return None
        attempts = await self.db.fetch("delivery_attempts", id=delivery_id, keep=ATTEMPTS_KEPT)
        return delivery_detail(row, attempts)

    async def changed_since(
        self, since: str, *, limit: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.db.fetch("changed_since", since=since, limit=limit)
        return [(r["owner"], task_view(r)) for r in rows]

    async def backlog(self, now: float) -> int:
        return int(await self.db.fetchval("backlog", now=now))

    async def stats(self, now: float) -> Stats:
        by_status = await self.db.fetch("stats_tasks")
        due = await self.db.fetchrow("stats_due", now=now)
        outbox_rows = await self.db.fetch("stats_outbox", now=now)
        return Stats(
            tasks={(r["provider"], r["status"]): r["n"] for r in by_status},
            polls_due=due["polls_due"],
            deliveries={r["status"]: r["n"] for r in outbox_rows},
            deliveries_due=sum(r["due"] for r in outbox_rows if r["status"] == "pending"),
            oldest_unfinished_age=float(due["oldest"] or 0.0),
        )
