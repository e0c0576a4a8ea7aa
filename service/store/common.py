"""What both stores share: cursors, the views of endpoints and deliveries, new secrets, and a
few durations the stores' SQL works with."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any

import orjson

from service.domain.clock import to_iso
from service.domain.models import MODAL_CALL_LEASE as MODAL_CALL_LEASE
from service.store.base import DeliveryClaim, SubmitClaim

#: After a rotation the old secret keeps signing (beside the new one) this long.
ROTATION_OVERLAP = 24 * 3600.0
#: Attempts kept per delivery (issue 15): older ones are trimmed as a new one is recorded.
ATTEMPTS_KEPT = 20
#: Bytes of a receiver's answer kept with each attempt.
RESPONSE_KEPT = 512


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
        "attempts_ok": int(row["attempts_ok"]),
        "attempts_failed": int(row["attempts_failed"]),
        "success_rate": _rate(int(row["attempts_ok"]), int(row["attempts_failed"])),
        "last_failure_at": row["last_failure_at"],
        "last_failure": row["last_failure"],
    }
    if with_secret:
        view["secret"] = row["secret"]
    return view


def _rate(ok: int, failed: int) -> float | None:
    return None if ok + failed == 0 else round(ok / (ok + failed), 4)


def _iso(moment: float) -> str:
    return to_iso(datetime.fromtimestamp(moment, UTC))


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
        # when the deliverer tries next (pending only; a leased one may be under way now)
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["status"] == "pending" else None,
    }


def delivery_detail(row: Any, attempts: list[Any]) -> dict[str, Any]:
    """A delivery with the exact body it signs and sends, and its last attempts (oldest first;
    `attempts` come newest first)."""
    return {
        **delivery_view(row),
        "body": row["payload"],
        "attempt_history": [
            {
                "attempt": a["attempt"],
                "at": a["at"],
                "duration_ms": a["duration_ms"],
                "http_status": a["http_status"],
                "response": a["response"],
                "error": a["error"],
            }
            for a in reversed(attempts)
        ],
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


def submit_claim(row: Any, *, reclaimed: bool) -> SubmitClaim:
    """A queue row (either store's) as a claim."""
    return SubmitClaim(
        task_id=row["task_id"],
        provider=row["provider"],
        owner=row["owner"],
        queued_at=float(row["queued_at"]),
        attempts=int(row["attempts"]),
        reclaimed=reclaimed,
        request=orjson.loads(row["request"]),
        last_answer=row["last_answer"],
        lease_until=row["lease_until"],
    )
