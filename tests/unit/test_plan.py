"""The domain's plan of an ingest, without a store: what changes, which event, who hears of it,
with what body."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from service.domain.models import Observation, empty_result
from service.domain.plan import (
    Snapshot,
    Subscriber,
    announcement,
    bounded_raw,
    merged_result,
    plan,
)
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
    assert body["data"]["result"] == {**empty_result(), "images": ["u"]}


def test_results_merge_field_by_field_and_reach_the_webhook() -> None:
    """An answer's filled fields replace the task's; the fields it leaves empty keep what an
    earlier answer said (APIMart's /v1/midjourney carries buttons, /v1/tasks the expiry)."""
    buttons = [{"label": "U1", "custom_id": "MJ::JOB::upsample::1::x"}]
    before = {**empty_result(), "images": ["old"], "actions": buttons}
    expiring = {**empty_result(), "images": ["new"], "expires_at": "2026-12-04T10:00:00.000Z"}
    change = plan(
        Snapshot(task=row(status="IN_PROGRESS", progress=70, result=before), seen=0),
        obs(Status.SUCCESS, 100, result=expiring),
        schedule=None,
        now=NOW,
        now_epoch=EPOCH,
    )
    result = change.task["result"]
    assert result["images"] == ["new"] and result["actions"] == buttons
    assert result["expires_at"] == "2026-12-04T10:00:00.000Z"
    assert result["prompts"] == [] and result["provider_metadata"] is None
    assert orjson.loads(change.outbox[0].payload)["data"]["result"] == result
    described = merged_result(None, {"prompts": ["a lake", "a hill"], "cost": None})
    assert described == {**empty_result(), "prompts": ["a lake", "a hill"]}


def test_what_the_provider_said_besides_the_result_is_in_the_event() -> None:
    heard = obs(Status.IN_PROGRESS, 45, extra={"event": "progress"})
    change = plan(Snapshot(task=row(), seen=0), heard, schedule=None, now=NOW, now_epoch=EPOCH)
    assert change.event is not None and change.event["detail"]["provider"] == {"event": "progress"}
    quiet = plan(Snapshot(task=row(), seen=0), obs(Status.IN_PROGRESS, 45), schedule=None,
                 now=NOW, now_epoch=EPOCH)  # fmt: skip
    assert quiet.event is not None and quiet.event["detail"] is None


def test_a_base64_image_a_provider_echoes_is_not_kept() -> None:
    payload = "iVBORw0KGgoAAAANSUhEUg" * 50
    raw = {"id": "t", "mask_url": "data:image/png;base64," + payload, "image_urls": [
        "data:image/jpeg;base64,/9j/" + payload, "https://x/1.png"]}  # fmt: skip
    kept = bounded_raw(raw)
    assert kept is not None and payload[:20] not in kept
    assert orjson.loads(kept) == {
        "id": "t",
        "mask_url": "data:image/png;base64,<omitted>",
        "image_urls": ["data:image/jpeg;base64,<omitted>", "https://x/1.png"],
    }


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


def test_a_modal_answer_naming_a_new_provider_task_is_followed_and_the_old_one_kept() -> None:
    task = row(status="MODAL", progress=15, modal_entered=1, provider_task_id="task_old")
    call = Observation(status=Status.SUBMITTED, source="api", modal_call=True,
                       provider_task_id="task_new", dedupe_key="modal:task_new")  # fmt: skip
    change = plan(Snapshot(task=task, seen=0), call, schedule=None, now=NOW, now_epoch=EPOCH)
    assert change.decision.applied and change.task["provider_task_id"] == "task_new"
    assert change.sets["provider_task_id"] == "task_new"
    assert change.sets["previous_provider_task_id"] == "task_old"
    assert change.event is not None and change.event["detail"]["provider_task_id"] == "task_new"
    assert change.event["detail"]["previous_provider_task_id"] == "task_old"
    assert "new provider task" in change.event["detail"]["note"]
    # The same id (the docs' prose): nothing to follow, nothing recorded as previous.
    same = replace(call, provider_task_id="task_old")
    kept = plan(Snapshot(task=task, seen=0), same, schedule=None, now=NOW, now_epoch=EPOCH)
    assert kept.decision.applied and "previous_provider_task_id" not in kept.sets
    assert "provider_task_id" not in kept.sets
    # A late poll of the old id afterwards is stale, not foreign, and changes nothing.
    after = row(status="SUBMITTED", progress=20, modal_entered=1, provider_task_id="task_new",
                previous_provider_task_id="task_old")  # fmt: skip
    late = plan(Snapshot(task=after, seen=0), obs(Status.MODAL, 15, provider_task_id="task_old"),
                schedule=None, now=NOW, now_epoch=EPOCH)  # fmt: skip
    assert late.decision.outcome == "stale" and late.sets == {}


def test_the_modal_timer_yields_while_the_modal_call_claim_lasts() -> None:
    timer = Observation(status=Status.CANCEL, source="timer")
    for claimed_at, outcome in ((EPOCH - 5, "stale"), (EPOCH - 61, "applied"), (None, "applied")):
        task = row(status="MODAL", progress=15, modal_entered=1, modal_call_at=claimed_at)
        change = plan(Snapshot(task=task, seen=0), timer, schedule=None, now=NOW,
                      now_epoch=EPOCH)  # fmt: skip
        assert change.decision.outcome == outcome, claimed_at
