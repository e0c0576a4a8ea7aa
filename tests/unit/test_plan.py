"""The domain's plan of an ingest, without a store: what changes, which event, who hears of it,
with what body."""

from __future__ import annotations

from typing import Any

import orjson

from service.domain.models import Observation
from service.domain.plan import Snapshot, Subscriber, announcement, plan
from service.domain.schedule import Schedule
from service.domain.status import Status

NOW, EPOCH = "2026-12-01T10:00:00.000Z", 1_796_000_000.0


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "task_1",
        "owner": "alice",
        "provider": "simulator-apimart",
        "action": "imagine",
        "status": "SUBMITTED",
        "progress": 0,
        "provider_task_id": "p-1",
        "parent_id": None,
        "params": {"prompt": "x"},
        "result": None,
        "error": None,
        "metadata": None,
        "callback_url": "https://hooks.example.com/a",
        "callback_events": ["task.submitted", "task.progress", "task.succeeded", "task.failed"],
        "modal_entered": 0,
        "version": 3,
        "sequence": 1,
        "created_at": NOW,
        "updated_at": NOW,
        "finished_at": None,
    }
    return base | overrides


def obs(status: Status | None, progress: int | None = None, **kw: Any) -> Observation:
    return Observation(status=status, source="poll", progress=progress, **kw)


def test_progress_within_a_status_is_announced_as_progress_not_a_second_status() -> None:
    change = plan(Snapshot(task=row(), seen=0), obs(Status.SUBMITTED, 10), schedule=None,
                  now=NOW, now_epoch=EPOCH)  # fmt: skip
    assert change.decision.applied and change.task["progress"] == 10
    assert [o.event_type for o in change.outbox] == ["task.progress"]
    assert announcement(Status.SUBMITTED, Status.IN_PROGRESS) == "task.progress"
    assert announcement(Status.IN_PROGRESS, Status.SUCCESS) == "task.succeeded"
    assert announcement(Status.NOT_START, Status.SUBMITTED) == "task.submitted"


def test_an_applied_change_plans_columns_event_and_one_body_per_subscriber() -> None:
    subscribers = [
        Subscriber(id="ep_all", url="https://a.example.com/"),
        Subscriber(id="ep_fail", url="https://b.example.com/", events=("task.failed",)),
    ]
    done = obs(Status.SUCCESS, 100, result={"images": ["u"], "grid_url": None})
    change = plan(
        Snapshot(task=row(progress=40, status="IN_PROGRESS"), seen=0, subscribers=subscribers),
        done,
        schedule=Schedule(next_poll_at=EPOCH + 5),
        now=NOW,
        now_epoch=EPOCH,
    )
    assert change.version == 3 and change.sets["version"] == 4 and change.sets["sequence"] == 2
    assert change.sets["finished_at"] == NOW and change.sets["next_poll_at"] is None
    assert "poll_attempts" not in change.sets  # a terminal task is never polled again
    assert change.event is not None and change.event["outcome"] == "applied"
    assert [(o.subscriber, o.event_type) for o in change.outbox] == [
        ("task", "task.succeeded"),
        ("ep_all", "task.succeeded"),
    ]
    body = orjson.loads(change.outbox[0].payload)
    assert body == {"type": "task.succeeded", "timestamp": NOW, "data": change.task}
    assert body["data"]["result"] == {"images": ["u"], "grid_url": None}


def test_an_unexplained_failure_gets_a_default_error_and_keeps_its_progress() -> None:
    change = plan(Snapshot(task=row(status="IN_PROGRESS", progress=60), seen=0),
                  obs(Status.FAILURE, 100), schedule=None, now=NOW, now_epoch=EPOCH)  # fmt: skip
    assert change.task["status"] == "FAILURE" and change.task["progress"] == 60
    assert change.task["error"]["code"] == "provider_failed"


def test_a_delivery_seen_once_is_a_duplicate_event_and_later_ones_are_counted() -> None:
    again = obs(Status.SUCCESS, 100, dedupe_key="cb:1")
    first_replay = plan(Snapshot(task=row(), seen=1), again, schedule=None, now=NOW,
                        now_epoch=EPOCH)  # fmt: skip
    assert first_replay.decision.outcome == "duplicate" and first_replay.event is not None
    assert first_replay.sets == {} and first_replay.outbox == ()
    later = plan(Snapshot(task=row(), seen=2), again, schedule=None, now=NOW, now_epoch=EPOCH)
    assert later.repeat and later.event is None and later.sets == {} and later.outbox == ()


def test_a_stale_poll_only_moves_the_schedule() -> None:
    sched = Schedule(next_poll_at=EPOCH + 4, idle_next_poll_at=EPOCH + 9, idle_attempts=2)
    change = plan(Snapshot(task=row(status="IN_PROGRESS", progress=50), seen=0),
                  obs(Status.SUBMITTED, 10), schedule=sched, now=NOW, now_epoch=EPOCH)  # fmt: skip
    assert change.decision.outcome == "stale"
    assert change.sets == {"next_poll_at": EPOCH + 9, "poll_attempts": 2}
    assert change.outbox == ()
