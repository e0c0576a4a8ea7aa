"""The SQLite side of notifications: endpoints, outbox rows written with each change, and the
deliverer's claims and results. Units run inside the writer's transaction like `_apply`.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from service.domain.clock import utcnow_iso
from service.domain.delivery import disable_reason
from service.domain.ids import new_id
from service.errors import NotFound
from service.store import queries
from service.store.base import DeliveryClaim, DeliveryResult
from service.store.common import (
    ATTEMPTS_KEPT,
    ROTATION_OVERLAP,
    delivery_claim,
    delivery_view,
    endpoint_view,
    new_secret,
)

Q = queries.load("sqlite_queries.sql")


def create_endpoint(
    conn: sqlite3.Connection, owner: str, url: str, events: list[str], description: str | None
) -> dict[str, Any]:
    endpoint_id = new_id("ep")
    conn.execute(
        Q["insert_endpoint"],
        {
            "id": endpoint_id,
            "owner": owner,
            "url": url,
            "events": orjson.dumps(events).decode(),
            "description": description,
            "secret": new_secret(),
            "created_at": utcnow_iso(),
        },
    )
    row = conn.execute(Q["endpoint_by_id"], {"id": endpoint_id}).fetchone()
    return endpoint_view(row, with_secret=True)


def _endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> sqlite3.Row:
    row = conn.execute(Q["live_endpoint"], {"id": endpoint_id, "owner": owner}).fetchone()
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return row  # type: ignore[no-any-return]


def delete_endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> None:
    _endpoint(conn, owner, endpoint_id)
    conn.execute(Q["delete_endpoint"], {"id": endpoint_id, "now": utcnow_iso()})
    _bury(conn, endpoint_id, "the endpoint was deleted")


def enable_endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> dict[str, Any]:
    _endpoint(conn, owner, endpoint_id)
    conn.execute(Q["enable_endpoint"], {"id": endpoint_id})
    return endpoint_view(_endpoint(conn, owner, endpoint_id))


def rotate_secret(
    conn: sqlite3.Connection, owner: str, endpoint_id: str, now: float
) -> dict[str, Any]:
    old = _endpoint(conn, owner, endpoint_id)
    conn.execute(
        Q["rotate_secret"],
        {
            "id": endpoint_id,
            "secret": new_secret(),
            "previous_secret": old["secret"],
            "previous_secret_until": now + ROTATION_OVERLAP,
        },
    )
    return endpoint_view(_endpoint(conn, owner, endpoint_id), with_secret=True)


def _bury(conn: sqlite3.Connection, endpoint_id: str, reason: str) -> None:
    conn.execute(Q["bury"], {"subscriber": endpoint_id, "reason": reason})


def claim_due(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    lease: float,
    per_url: int,
    inflight: dict[str, int],
) -> list[DeliveryClaim]:
    """Lease due deliveries. Per task and subscriber only the earliest pending row is due, so a
    later event is never delivered before an earlier one; per receiving URL at most `per_url`
    are in flight (counting `inflight`, this process's attempts under way)."""
    rows = conn.execute(
        Q["claim_due_deliveries"],
        {
            "now": now,
            "lease_until": now + lease,
            "per_url": per_url,
            "inflight": orjson.dumps(inflight).decode(),
            "limit": limit,
        },
    ).fetchall()
    return [
        delivery_claim(
            r,
            None
            if r["subscriber"] == "task"
            else conn.execute(Q["endpoint_secrets"], {"id": r["subscriber"]}).fetchone(),
            now,
        )
        for r in rows
    ]


def record(conn: sqlite3.Connection, claim: DeliveryClaim, result: DeliveryResult) -> bool:
    """Store an attempt's result; returns True if the endpoint was disabled by it."""
    now = utcnow_iso()
    conn.execute(
        Q["record_delivery"],
        {
            "id": claim.id,
            "status": result.status,
            "attempts": claim.attempts + 1,
            "next_attempt_at": result.next_attempt_at,
            "last_status": result.http_status,
            "last_error": result.error,
            "now": now,
        },
    )
    conn.execute(
        Q["insert_delivery_attempt"],
        {
            "id": claim.id,
            "attempt": claim.attempts + 1,
            "at": now,
            "duration_ms": result.duration_ms,
            "http_status": result.http_status,
            "response": result.response,
            "error": result.error,
        },
    )
    conn.execute(Q["trim_delivery_attempts"], {"id": claim.id, "keep": ATTEMPTS_KEPT})
    if claim.subscriber == "task":
        return False
    conn.execute(
        Q["count_endpoint_attempt"],
        {
            "id": claim.subscriber,
            "ok": int(result.status == "delivered"),
            "now": now,
            "error": result.error,
        },
    )
    if result.status == "delivered":
        conn.execute(Q["endpoint_recovered"], {"id": claim.subscriber})
        return False
    since = conn.execute(
        Q["endpoint_failing"], {"id": claim.subscriber, "at": result.at}
    ).fetchone()["failing_since"]
    reason = disable_reason(result.http_status, result.at, since)
    if reason is None:
        return False
    conn.execute(
        Q["disable_endpoint"], {"id": claim.subscriber, "now": utcnow_iso(), "reason": reason}
    )
    _bury(conn, claim.subscriber, f"not sent: {reason}")
    return True


def retry(conn: sqlite3.Connection, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
    """Send a delivery again (same webhook-id), whatever became of it."""
    conn.execute(Q["retry_delivery"], {"id": delivery_id, "owner": owner, "now": now})
    row = conn.execute(Q["delivery_by_id"], {"id": delivery_id, "owner": owner}).fetchone()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return delivery_view(row)  # a leased one (rowcount 0) is being attempted now
