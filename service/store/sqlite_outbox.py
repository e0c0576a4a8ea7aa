"""The SQLite side of notifications: endpoints, outbox rows written with each change, and the
deliverer's claims and results. Units run inside the writer's transaction like `_apply`.
"""

from __future__ import annotations

import base64
import secrets
import sqlite3
from typing import Any

import orjson

from service.domain.clock import utcnow_iso
from service.domain.ids import new_id
from service.errors import NotFound
from service.store.base import DeliveryClaim, DeliveryResult

#: An endpoint failing without a single success for this long is disabled.
DISABLE_AFTER = 5 * 24 * 3600.0
#: After a rotation the old secret keeps signing (beside the new one) this long.
ROTATION_OVERLAP = 24 * 3600.0


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def endpoint_view(row: Any, *, with_secret: bool = False) -> dict[str, Any]:
    view = {
        "id": row["id"],
        "url": row["url"],
        "events": orjson.loads(row["events"]),
        "description": row["description"],
        "disabled": row["disabled_at"] is not None,
        "disabled_reason": row["disabled_reason"],
        "disabled_at": row["disabled_at"],
        "created_at": row["created_at"],
    }
    if with_secret:
        view["secret"] = row["secret"]
    return view


def delivery_view(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "endpoint_id": None if row["subscriber"] == "task" else row["subscriber"],
        "url": row["url"],
        "event_type": row["event_type"],
        "sequence": row["sequence"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "last_attempt_at": row["last_attempt_at"],
        "delivered_at": row["delivered_at"],
        "created_at": row["created_at"],
    }


def create_endpoint(
    conn: sqlite3.Connection, owner: str, url: str, events: list[str], description: str | None
) -> dict[str, Any]:
    endpoint_id = new_id("ep")
    conn.execute(
        "INSERT INTO endpoints (id, owner, url, events, description, secret, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (endpoint_id, owner, url, orjson.dumps(events).decode(), description, new_secret(),
         utcnow_iso()),
    )  # fmt: skip
    row = conn.execute("SELECT * FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
    return endpoint_view(row, with_secret=True)


def _endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> sqlite3.Row:
    row = conn.execute(
        "SELECT * FROM endpoints WHERE id = ? AND owner = ? AND deleted_at IS NULL",
        (endpoint_id, owner),
    ).fetchone()
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return row  # type: ignore[no-any-return]


def delete_endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> None:
    _endpoint(conn, owner, endpoint_id)
    conn.execute("UPDATE endpoints SET deleted_at = ? WHERE id = ?", (utcnow_iso(), endpoint_id))
    _bury(conn, endpoint_id, "the endpoint was deleted")


def enable_endpoint(conn: sqlite3.Connection, owner: str, endpoint_id: str) -> dict[str, Any]:
    _endpoint(conn, owner, endpoint_id)
    conn.execute(
        "UPDATE endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL"
        " WHERE id = ?",
        (endpoint_id,),
    )
    return endpoint_view(_endpoint(conn, owner, endpoint_id))


def rotate_secret(
    conn: sqlite3.Connection, owner: str, endpoint_id: str, now: float
) -> dict[str, Any]:
    old = _endpoint(conn, owner, endpoint_id)
    conn.execute(
        "UPDATE endpoints SET secret = ?, previous_secret = ?, previous_secret_until = ?"
        " WHERE id = ?",
        (new_secret(), old["secret"], now + ROTATION_OVERLAP, endpoint_id),
    )
    return endpoint_view(_endpoint(conn, owner, endpoint_id), with_secret=True)


def _bury(conn: sqlite3.Connection, endpoint_id: str, reason: str) -> None:
    conn.execute(
        "UPDATE outbox SET status = 'dead', last_error = ?, lease_until = NULL"
        " WHERE subscriber = ? AND status = 'pending'",
        (reason, endpoint_id),
    )


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
    busy = " UNION ALL ".join(["SELECT ? AS url, ? AS n"] * len(inflight)) or (
        "SELECT NULL AS url, 0 AS n WHERE 0"
    )
    rows = conn.execute(
        f"WITH busy AS ({busy}),"
        " due AS (SELECT o.id, o.url, o.next_attempt_at,"
        "  ROW_NUMBER() OVER (PARTITION BY o.url ORDER BY o.next_attempt_at) AS rank"
        "  FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
        "  AND (o.lease_until IS NULL OR o.lease_until <= ?)"
        "  AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.task_id = o.task_id"
        "   AND e.subscriber = o.subscriber AND e.status = 'pending'"
        "   AND e.sequence < o.sequence))"
        " UPDATE outbox SET lease_until = ? WHERE id IN ("
        "  SELECT id FROM due WHERE rank <= ? - coalesce("
        "   (SELECT n FROM busy WHERE busy.url = due.url), 0)"
        "  ORDER BY next_attempt_at LIMIT ?)"
        " RETURNING id, task_id, subscriber, url, payload, attempts",
        (
            *(x for item in inflight.items() for x in item),
            now,
            now,
            now + lease,
            per_url,
            limit,
        ),
    ).fetchall()
    claims = []
    for r in rows:
        secrets_: list[str] = []
        if r["subscriber"] != "task":
            ep = conn.execute(
                "SELECT secret, previous_secret, previous_secret_until FROM endpoints WHERE id = ?",
                (r["subscriber"],),
            ).fetchone()
            secrets_ = [ep["secret"]]
            if ep["previous_secret"] and (ep["previous_secret_until"] or 0) > now:
                secrets_.append(ep["previous_secret"])
        claims.append(
            DeliveryClaim(
                id=r["id"],
                task_id=r["task_id"],
                subscriber=r["subscriber"],
                url=r["url"],
                payload=r["payload"].encode(),
                attempts=r["attempts"],
                secrets=tuple(secrets_),
            )
        )
    return claims


def record(conn: sqlite3.Connection, claim: DeliveryClaim, result: DeliveryResult) -> bool:
    """Store an attempt's result; returns True if the endpoint was disabled by it."""
    conn.execute(
        "UPDATE outbox SET status = ?, attempts = ?, next_attempt_at = ?, lease_until = NULL,"
        " last_status = ?, last_error = ?, last_attempt_at = ?,"
        " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE id = ?",
        (
            result.status,
            claim.attempts + 1,
            result.next_attempt_at,
            result.http_status,
            result.error,
            utcnow_iso(),
            result.status,
            utcnow_iso(),
            claim.id,
        ),
    )
    if claim.subscriber == "task":
        return False
    if result.status == "delivered":
        conn.execute("UPDATE endpoints SET failing_since = NULL WHERE id = ?", (claim.subscriber,))
        return False
    conn.execute(
        "UPDATE endpoints SET failing_since = coalesce(failing_since, ?) WHERE id = ?",
        (result.at, claim.subscriber),
    )
    since = conn.execute(
        "SELECT failing_since FROM endpoints WHERE id = ?", (claim.subscriber,)
    ).fetchone()["failing_since"]
    reason = None
    if result.http_status == 410:
        reason = "the endpoint answered 410 Gone"
    elif result.at - since >= DISABLE_AFTER:
        reason = "the endpoint failed every delivery for 5 days"
    if reason is None:
        return False
    conn.execute(
        "UPDATE endpoints SET disabled_at = ?, disabled_reason = ? WHERE id = ?",
        (utcnow_iso(), reason, claim.subscriber),
    )
    _bury(conn, claim.subscriber, f"not sent: {reason}")
    return True


def retry(conn: sqlite3.Connection, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
    """Send a delivery again (same webhook-id), whatever became of it."""
    conn.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_at = ?, lease_until = NULL,"
        " attempts = 0 WHERE id = ? AND owner = ? AND status != 'pending'",
        (now, delivery_id, owner),
    )
    row = conn.execute(
        "SELECT * FROM outbox WHERE id = ? AND owner = ?", (delivery_id, owner)
    ).fetchone()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return delivery_view(row)  # a pending one (rowcount 0) is already on its way
