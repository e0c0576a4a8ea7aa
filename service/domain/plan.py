"""Planning one ingest: what an observation does to a task, decided here, persisted by a store.

`plan(snapshot, observation, ...)` is pure. From the task as loaded, whether this delivery was
seen before, and who listens, it decides everything a store then writes in one transaction: the
outcome (the state machine's `decide`), the event row (or one more repeat on the duplicate event
already there), the changed task columns with the version they must replace, the next poll, the
default error of an unexplained ending, and one outbox row per subscriber with the exact signed
body. SQLite and PostgreSQL differ only in how they load the snapshot and write the Change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from service.domain.ids import new_id
from service.domain.mj import mj_task
from service.domain.mj import notifies as mj_notifies
from service.domain.models import (
    MODAL_CALL_LEASE,
    RAW_LIMIT,
    Observation,
    empty_result,
    task_error,
)
from service.domain.schedule import Schedule
from service.domain.status import (
    TERMINAL,
    Decision,
    Status,
    TaskState,
    decide,
    event_type_for,
    kept,
)
from service.domain.views import task_view

#: The payload of a base64 `data:` URL inside JSON text (as far as the next quote).
_BASE64_DATA = re.compile(r";base64,[A-Za-z0-9+/=_\\-]+")

#: Task columns that hold JSON (a store encodes them its own way).
JSON_COLUMNS = frozenset({"params", "result", "error", "metadata", "callback_events"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriber:
    """An owner's live endpoint: who hears of an announced change (`events` empty: all)."""

    id: str
    url: str
    events: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What a store loads, in one query, before planning an ingest."""

    #: the task row by column name, JSON columns decoded
    task: Mapping[str, Any]
    #: events of this task already carrying the observation's dedupe key (0, 1, or 2: more are
    #: counted on the second, the `duplicate` event)
    seen: int
    subscribers: Sequence[Subscriber] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxRow:
    id: str
    task_id: str
    owner: str
    #: "task" for the task's own callback_url, else the endpoint's id
    subscriber: str
    url: str
    event_type: str
    sequence: int
    #: the webhook body, exactly as it is signed and sent
    payload: str
    next_attempt_at: float
    created_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """Everything one ingest writes, decided: a store persists it in one transaction."""

    decision: Decision
    from_status: Status
    owner: str
    #: the event row to insert; None when this is one more repeat of a delivery already
    #: recorded twice (the store then adds one to the `repeats` of the latest event with
    #: `dedupe_key`)
    event: dict[str, Any] | None
    dedupe_key: str | None
    #: the raw payload kept with the event, bounded (JSON text)
    raw: str | None
    #: changed task columns (JSON columns as values), written only if `version` still holds
    sets: dict[str, Any]
    version: int
    #: the task as it is after the change (the public view)
    task: dict[str, Any]
    outbox: tuple[OutboxRow, ...] = ()

    @property
    def repeat(self) -> bool:
        return self.event is None


def plan(
    snapshot: Snapshot,
    obs: Observation,
    *,
    schedule: Schedule | None,
    now: str,
    now_epoch: float,
) -> Change:
    """Decide what `obs` does to the task in `snapshot` (pure: no I/O, no clock of its own)."""
    row = snapshot.task
    state = TaskState(
        status=Status(row["status"]),
        progress=row["progress"],
        modal_entered=bool(row["modal_entered"]),
        provider_task_id=row["provider_task_id"],
        previous_provider_task_id=row.get("previous_provider_task_id"),
        modal_call_live=(row.get("modal_call_at") or 0) > now_epoch - MODAL_CALL_LEASE,
    )
    common = {"from_status": state.status, "owner": row["owner"], "version": row["version"]}
    if snapshot.seen >= 2:  # seen twice: one more repeat, counted, no new row
        return Change(
            decision=kept(state, "duplicate", "this delivery was recorded before"),
            event=None,
            dedupe_key=obs.dedupe_key,
            raw=None,
            sets={},
            task=task_view(row),
            **common,
        )
    if snapshot.seen:
        decision = kept(state, "duplicate", "this delivery was recorded before")
    else:
        decision = decide(state, obs)
    sets = _changes(row, decision, obs, now)
    if decision.applied and decision.status != state.status:
        sets["status_since"] = now_epoch
    if schedule is not None and decision.status not in TERMINAL:
        next_poll_at, attempts = schedule.pick(decision.applied)
        sets |= {"next_poll_at": next_poll_at, "poll_attempts": attempts}
        if schedule.release:  # only the poll that holds the lease gives it back
            sets["poll_lease_until"] = None
    task = task_view({**row, **sets})
    outbox: tuple[OutboxRow, ...] = ()
    if decision.applied:
        kind = announcement(state.status, decision.status)
        outbox = announce(task, row["owner"], snapshot.subscribers, kind, now, now_epoch)
    event = _event(row["id"], obs, state, decision, now)
    if "previous_provider_task_id" in sets:
        # The history says which provider task the task followed before, and why it changed.
        event["detail"] = (event["detail"] or {}) | {
            "previous_provider_task_id": sets["previous_provider_task_id"],
            "note": "the modal call's answer names a new provider task: the task follows it",
        }
    return Change(
        decision=decision,
        event=event,
        dedupe_key=obs.dedupe_key,
        raw=bounded_raw(obs.raw),
        sets=sets,
        task=task,
        outbox=outbox,
        **common,
    )


def _event(
    task_id: str, obs: Observation, state: TaskState, decision: Decision, now: str
) -> dict[str, Any]:
    detail = {
        k: v
        for k, v in (
            ("reason", decision.reason),
            ("error", obs.error),
            ("provider_task_id", obs.provider_task_id),
            ("note", obs.detail if obs.status is not None else None),
            # what else the provider said that is not the task's result (APIMart's `action`,
            # Apiframe's webhook `event`, `expired`): kept in the history, not dropped
            ("provider", obs.extra),
        )
        if v
    }
    return {
        "id": new_id("evt"),
        "task_id": task_id,
        "source": obs.source,
        "type": event_type_for(obs.status),
        "outcome": decision.outcome,
        "from_status": state.status.value,
        "to_status": obs.status.value if obs.status is not None else None,
        "progress": obs.progress,
        "received_at": now,
        "detail": detail or None,
        "repeats": 0,
    }


def _changes(
    row: Mapping[str, Any], decision: Decision, obs: Observation, now: str
) -> dict[str, Any]:
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
            sets["result"] = merged_result(row["result"], obs.result)
        if obs.params_patch:
            sets["params"] = {**(row["params"] or {}), **obs.params_patch}
        if decision.status is Status.FAILURE or decision.status is Status.CANCEL:
            sets["error"] = obs.error or task_error(
                "provider_failed" if decision.status is Status.FAILURE else "cancelled",
                "the provider reported the task ended without saying why",
            )
        if decision.status in TERMINAL:
            sets |= {"finished_at": now, "next_poll_at": None, "poll_lease_until": None}
    if obs.provider_task_id and not row["provider_task_id"] and not decision.foreign:
        sets["provider_task_id"] = obs.provider_task_id
    elif (
        decision.applied
        and obs.modal_call
        and obs.provider_task_id
        and row["provider_task_id"]
        and obs.provider_task_id != row["provider_task_id"]
    ):
        # The modal call's answer named a new provider task: follow it, keep the old one (a
        # lookup by it still finds the task; a late poll naming it is stale).
        sets["provider_task_id"] = obs.provider_task_id
        sets["previous_provider_task_id"] = row["provider_task_id"]
    return sets


def merged_result(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """The task's result once an observation carrying one applies: each field the observation
    fills replaces the task's, and a field it leaves empty keeps what an earlier answer said (a
    provider's two task shapes carry different fields: APIMart's `/v1/tasks` the expiry,
    `/v1/midjourney` the buttons and the grid). Every field of `empty_result` is always there."""
    merged: dict[str, Any] = {**empty_result(), **(before or {})}
    for key, value in after.items():
        if value is not None and value != [] and value != {}:
            merged[key] = value
    return merged


def announcement(before: Status, after: Status) -> str:
    """The webhook event type of an applied change: the new status's (`task.succeeded`), once
    per status; a change of progress within a status is `task.progress` (an APIMart task at
    SUBMITTED 10% is not submitted twice)."""
    return "task.progress" if after is before else f"task.{event_type_for(after)}"


def announce(
    task: Mapping[str, Any],
    owner: str,
    subscribers: Sequence[Subscriber],
    event_type: str,
    now: str,
    now_epoch: float,
) -> tuple[OutboxRow, ...]:
    """One outbox row per subscriber of this change: the task's callback_url (if it asked for
    this event) and the owner's endpoints that take it; the body is the Standard Webhooks
    payload `{"type", "timestamp", "data": <task>}`, the same bytes for each."""
    targets: list[tuple[str, str]] = []
    if task["callback_url"] and event_type in (task["callback_events"] or ()):
        targets.append(("task", task["callback_url"]))
    for sub in subscribers:
        if not sub.events or event_type in sub.events:
            targets.append((sub.id, sub.url))
    if not targets:
        return ()
    payload = orjson.dumps({"type": event_type, "timestamp": now, "data": task}).decode()
    # A midjourney-proxy notifyHook (a task submitted through /mj) is sent that project's task
    # shape instead; the same outbox, retries, ordering, signing and guard carry it.
    hook = orjson.dumps(mj_task(task)).decode() if mj_notifies(task) else payload
    return tuple(
        OutboxRow(
            id=new_id("msg"),
            task_id=task["id"],
            owner=owner,
            subscriber=subscriber,
            url=url,
            event_type=event_type,
            sequence=task["sequence"],
            payload=hook if subscriber == "task" else payload,
            next_attempt_at=now_epoch,
            created_at=now,
        )
        for subscriber, url in targets
    )


def bounded_raw(raw: Any) -> str | None:
    """A provider's raw payload as kept with an event: JSON text, at most RAW_LIMIT characters
    (longer is kept as its head); never a reason for a write to fail."""
    if raw is None:
        return None
    try:
        text = raw if isinstance(raw, str) else orjson.dumps(raw, default=str).decode()
    except orjson.JSONEncodeError:
        text = orjson.dumps({"unserializable": True, "head": repr(raw)[:1024]}).decode()
    if ";base64," in text:
        # A provider echoing a base64 image (a mask, an image given inline) keeps no copy here.
        text = _BASE64_DATA.sub(";base64,<omitted>", text)
    if len(text) > RAW_LIMIT:
        return orjson.dumps({"truncated": True, "size": len(text), "head": text[:1024]}).decode()
    return text
