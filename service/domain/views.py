"""The public JSON shapes of a task and an event, built from store rows (DESIGN §8)."""

from __future__ import annotations

from typing import Any, Protocol

import orjson


class Row(Protocol):
    """A store row: a mapping, or sqlite3.Row, read by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _json(value: Any) -> Any:
    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


def task_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "provider": row["provider"],
        "action": row["action"],
        "status": row["status"],
        "progress": row["progress"],
        "provider_task_id": row["provider_task_id"],
        "parent_id": row["parent_id"],
        "params": _json(row["params"]),
        "result": _json(row["result"]),
        "error": _json(row["error"]),
        "metadata": _json(row["metadata"]),
        "callback_url": row["callback_url"],
        "callback_events": _json(row["callback_events"]),
        "sequence": row["sequence"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "finished_at": row["finished_at"],
        #: accepted, waiting for its provider to take it (the submission queue, issue 13)
        "queued": row["status"] == "NOT_START",
    }


def event_view(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "task_id": row["task_id"],
        "source": row["source"],
        "type": row["type"],
        "outcome": row["outcome"],
        "from_status": row["from_status"],
        "to_status": row["to_status"],
        "progress": row["progress"],
        "received_at": row["received_at"],
        "detail": _json(row["detail"]),
        #: later replays of this same delivery (a duplicate counts them instead of new rows)
        "repeats": row["repeats"],
    }
