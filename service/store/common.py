"""What both stores share: cursors, the views of endpoints and deliveries, new secrets, and a
few durations the stores' SQL works with."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import orjson

from service.domain.models import MODAL_CALL_LEASE as MODAL_CALL_LEASE
from service.store.base import DeliveryClaim

#: After a rotation the old secret keeps signing (beside the new one) this long.
ROTATION_OVERLAP = 24 * 3600.0


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Raises ValueError for a cursor jobhook did not issue."""
    padded = cursor + "=" * (-len(cursor) % 4)
    value = base64.urlsafe_b64decode(padded.encode()).decode()
    if "_" not in value:
        raise ValueError("not a jobhook cursor")
    return value


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


def delivery_claim(row: Any, endpoint: Any, now: float) -> DeliveryClaim:
    """A leased outbox `row` as the deliverer's claim. `endpoint` (its secret columns; None for
    a task's own callback_url, signed with JOBHOOK_WEBHOOK_SECRET) gives the secrets to sign
    with: the current one, and during a rotation's overlap the previous one too."""
    secrets_: tuple[str, ...] = ()
    if endpoint is not None:
        secrets_ = (endpoint["secret"],)
        if endpoint["previous_secret"] and (endpoint["previous_secret_until"] or 0) > now:
            secrets_ += (endpoint["previous_secret"],)
    return DeliveryClaim(
        id=row["id"],
        task_id=row["task_id"],
        subscriber=row["subscriber"],
        url=row["url"],
        payload=row["payload"].encode(),
        attempts=row["attempts"],
        secrets=secrets_,
    )
