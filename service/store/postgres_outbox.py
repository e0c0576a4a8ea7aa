"""The PostgreSQL side of notifications: endpoints, and the deliverer's claims and results.

Claims hold for every process on the database: rows are leased with FOR UPDATE SKIP LOCKED, and
the per-receiver limit counts the unexpired leases in the database, under an advisory lock that
makes concurrent claims take turns (each then sees the leases the one before it committed).
"""

from __future__ import annotations

from typing import Any

import orjson

from service.domain.clock import utcnow_iso
from service.domain.delivery import disable_reason
from service.domain.ids import new_id
from service.errors import NotFound
from service.store.base import DeliveryClaim, DeliveryResult
from service.store.common import (
    ATTEMPTS_KEPT,
    ROTATION_OVERLAP,
    delivery_claim,
    delivery_view,
    endpoint_view,
    new_secret,
)
from service.store.postgres_db import DELIVERY_CLAIMS_LOCK, LOCK_CLASS, Database, run, run_all


async def create_endpoint(
    db: Database, owner: str, url: str, events: list[str], description: str | None
) -> dict[str, Any]:
    row = await db.fetchrow(
        "insert_endpoint",
        id=new_id("ep"),
        owner=owner,
        url=url,
        events=orjson.dumps(events).decode(),
        description=description,
        secret=new_secret(),
        now=utcnow_iso(),
    )
    return endpoint_view(row, with_secret=True)


async def delete_endpoint(db: Database, owner: str, endpoint_id: str) -> None:
    gone = await db.fetchrow(
        "delete_endpoint",
        id=endpoint_id,
        owner=owner,
        now=utcnow_iso(),
        reason="the endpoint was deleted",
    )
    if gone is None:
        raise NotFound(f"no endpoint {endpoint_id}")


async def enable_endpoint(db: Database, owner: str, endpoint_id: str) -> dict[str, Any]:
    row = await db.fetchrow("enable_endpoint", id=endpoint_id, owner=owner)
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint_view(row)


async def rotate_secret(db: Database, owner: str, endpoint_id: str, now: float) -> dict[str, Any]:
    row = await db.fetchrow(
        "rotate_secret",
        id=endpoint_id,
        owner=owner,
        secret=new_secret(),
        until=now + ROTATION_OVERLAP,
    )
    if row is None:
        raise NotFound(f"no endpoint {endpoint_id}")
    return endpoint_view(row, with_secret=True)


async def claim_due(
    db: Database, now: float, limit: int, lease: float, per_url: int, inflight: dict[str, int]
) -> list[DeliveryClaim]:
    """Lease due deliveries (see `claim_deliveries` in postgres_queries.sql): four round trips,
    BEGIN, the lock, the claim, COMMIT; once per deliverer wake-up, not per request."""
    async with db.transaction() as conn:
        await run(conn, "advisory_lock", lock_class=LOCK_CLASS, lock_key=DELIVERY_CLAIMS_LOCK)
        rows = await run_all(
            conn,
            "claim_deliveries",
            now=now,
            lease_until=now + lease,
            per_url=per_url,
            limit=limit,
            inflight_urls=list(inflight),
            inflight_counts=list(inflight.values()),
        )
    return [delivery_claim(r, None if r["subscriber"] == "task" else r, now) for r in rows]


async def record(db: Database, claim: DeliveryClaim, result: DeliveryResult) -> bool:
    """Store an attempt's result; returns True if the endpoint was disabled by it."""
    row = await db.fetchrow(
        "record_delivery",
        id=claim.id,
        subscriber=claim.subscriber,
        status=result.status,
        attempts=claim.attempts + 1,
        next_attempt_at=result.next_attempt_at,
        http_status=result.http_status,
        error=result.error,
        now=utcnow_iso(),
        at=result.at,
        duration_ms=result.duration_ms,
        response=result.response,
        keep=ATTEMPTS_KEPT,
    )
    if claim.subscriber == "task" or result.status == "delivered":
        return False
    reason = disable_reason(result.http_status, result.at, row["failing_since"])
    if reason is None:
        return False
    await db.execute(
        "disable_endpoint",
        id=claim.subscriber,
        now=utcnow_iso(),
        reason=reason,
        dead_reason=f"not sent: {reason}",
    )
    return True


async def retry(db: Database, owner: str, delivery_id: str, now: float) -> dict[str, Any]:
    """Send a delivery again (same webhook-id), whatever became of it."""
    row = await db.fetchrow("retry_delivery", id=delivery_id, owner=owner, now=now)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return delivery_view(row)
