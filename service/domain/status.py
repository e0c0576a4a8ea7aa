"""The task state machine: statuses, the allowed moves, and `decide`, which judges one observation.

The table here is the only copy in Python; the store enforces the same pairs again in SQL and a
test asserts that the two agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from service.domain.models import Observation, Outcome, Source


class Status(enum.StrEnum):
    NOT_START = "NOT_START"  #: created, not yet accepted by the provider
    SUBMITTED = "SUBMITTED"  #: accepted by the provider, queued
    IN_PROGRESS = "IN_PROGRESS"  #: the provider is generating
    MODAL = "MODAL"  #: waiting for the client's modal call (mask + prompt)
    SUCCESS = "SUCCESS"  #: finished with a result (terminal)
    FAILURE = "FAILURE"  #: finished with an error (terminal)
    CANCEL = "CANCEL"  #: cancelled, by the client, the provider or a timer (terminal)


TERMINAL = frozenset({Status.SUCCESS, Status.FAILURE, Status.CANCEL})
ACTIVE = frozenset(Status) - TERMINAL

#: (from, to) pairs a task may move along; same-status progress updates are not listed.
#: MODAL -> SUBMITTED is allowed only for the modal API call; `decide` checks the source.
ALLOWED: frozenset[tuple[Status, Status]] = frozenset(
    {(Status.NOT_START, to) for to in Status if to is not Status.NOT_START}
    | {(Status.SUBMITTED, to) for to in (Status.IN_PROGRESS, Status.MODAL, *TERMINAL)}
    | {(Status.IN_PROGRESS, to) for to in (Status.MODAL, *TERMINAL)}
    | {(Status.MODAL, to) for to in (Status.SUBMITTED, Status.IN_PROGRESS, *TERMINAL)}
)

_EVENT_TYPES = {
    Status.NOT_START: "submitted",
    Status.SUBMITTED: "submitted",
    Status.IN_PROGRESS: "progress",
    Status.MODAL: "modal",
    Status.SUCCESS: "succeeded",
    Status.FAILURE: "failed",
    Status.CANCEL: "cancelled",
}


def event_type_for(status: Status | None) -> str:
    """The event type an observation claims: `submitted, progress, modal, succeeded, ...`."""
    return _EVENT_TYPES[status] if status is not None else "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskState:
    """The part of a task the state machine reads."""

    status: Status
    progress: int = 0
    modal_entered: bool = False
    provider_task_id: str | None = None
    #: the provider task the task followed before a modal call's answer named a new one
    previous_provider_task_id: str | None = None
    #: a modal call is under way (claimed, its lease not run out): the MODAL timer yields
    modal_call_live: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one observation does to a task: the outcome, and the state after it."""

    outcome: Outcome
    status: Status
    progress: int
    modal_entered: bool
    reason: str | None = None
    #: the observation names another provider task than this one (a callback's 403)
    foreign: bool = False

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"


def kept(state: TaskState, outcome: Outcome, reason: str) -> Decision:
    """A decision that leaves the task as it is (recorded with `outcome` and `reason`)."""
    return Decision(
        outcome=outcome,
        status=state.status,
        progress=state.progress,
        modal_entered=state.modal_entered,
        reason=reason,
    )


def decide(state: TaskState, obs: Observation) -> Decision:
    """Judge `obs` against `state`. Pure: the same inputs always give the same decision."""

    def keep(outcome: Outcome, reason: str) -> Decision:
        return kept(state, outcome, reason)

    if (
        obs.provider_task_id
        and state.provider_task_id
        and obs.provider_task_id != state.provider_task_id
        # The modal call's answer may name a new provider task (seed 000's example does): the
        # task follows it from then on (`plan` records the old one).
        and not (obs.modal_call and state.status is Status.MODAL)
    ):
        if obs.provider_task_id == state.previous_provider_task_id:
            return keep("stale", f"names the previous provider task {obs.provider_task_id!r}")
        return Decision(
            outcome="rejected",
            status=state.status,
            progress=state.progress,
            modal_entered=state.modal_entered,
            reason=f"names provider task {obs.provider_task_id!r}, not {state.provider_task_id!r}",
            foreign=True,
        )
    new = obs.status
    if new is None:
        return keep("rejected", obs.detail or "unknown or unparseable status")
    if state.status in TERMINAL:
        if new == state.status:
            return keep("duplicate", "already in this terminal state")
        if new in TERMINAL:
            return keep("conflict", f"task already ended {state.status}")
        return keep("stale", f"task already ended {state.status}")

    claimed = _clamp(obs.progress)
    if new == state.status:
        if new not in TERMINAL and claimed is not None and claimed > state.progress:
            return Decision(
                outcome="applied",
                status=new,
                progress=claimed,
                modal_entered=state.modal_entered,
            )
        return keep("duplicate", "same status, no new progress")

    if (state.status, new) not in ALLOWED:
        return keep("stale", f"{state.status} does not go back to {new}")
    if state.status is Status.MODAL and obs.source == "timer" and state.modal_call_live:
        # The call and the timer never both win: while a call is under way the timer yields;
        # once the timer has ended the task, the call finds it not MODAL and is refused.
        return keep("stale", "a modal call is under way: the MODAL timer yields to it")
    if state.status is Status.MODAL and new is Status.SUBMITTED and not obs.modal_call:
        return keep("stale", "only the modal call moves a MODAL task to SUBMITTED")
    if new is Status.MODAL and state.modal_entered:
        return keep("stale", "the task has already been through MODAL")

    # SUCCESS is 100% done. FAILURE and CANCEL keep how far the task got (a failed task is not
    # done, whatever 100% a provider reports with the failure); a running task's progress only
    # goes up.
    if new is Status.SUCCESS:
        progress = 100
    elif new in TERMINAL:
        progress = state.progress
    else:
        progress = max(state.progress, claimed or 0)
    return Decision(
        outcome="applied",
        status=new,
        progress=progress,
        modal_entered=state.modal_entered or new is Status.MODAL,
    )


def _clamp(progress: int | None) -> int | None:
    if progress is None:
        return None
    return max(0, min(100, int(progress)))


__all__ = [
    "ACTIVE",
    "ALLOWED",
    "TERMINAL",
    "Decision",
    "Observation",
    "Source",
    "Status",
    "TaskState",
    "decide",
    "event_type_for",
    "kept",
]
