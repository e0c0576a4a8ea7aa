"""The state machine: every pair of statuses, the outcomes, and order-independence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.models import Observation, Result
from service.domain.status import ALLOWED, TERMINAL, Status, TaskState, decide


def obs(status: Status | None, progress: int | None = None, **kw: object) -> Observation:
    return Observation(status=status, source="callback", progress=progress, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("current", "new"), list(itertools.product(Status, Status)))
def test_every_pair_has_the_documented_outcome(current: Status, new: Status) -> None:
    decision = decide(TaskState(status=current, progress=10), obs(new, 10))
    if current in TERMINAL:
        expected = "duplicate" if new == current else "conflict" if new in TERMINAL else "stale"
    elif new == current:
        expected = "duplicate"
    elif (current, new) in ALLOWED and not (current is Status.MODAL and new is Status.SUBMITTED):
        expected = "applied"
    else:
        expected = "stale"
    assert decision.outcome == expected


def test_the_table_matches_design() -> None:
    # DESIGN §2, written out: from NOT_START anywhere; never back to SUBMITTED from IN_PROGRESS;
    # nothing leaves a terminal state.
    assert (Status.IN_PROGRESS, Status.SUBMITTED) not in ALLOWED
    assert (Status.MODAL, Status.SUBMITTED) in ALLOWED
    assert not [pair for pair in ALLOWED if pair[0] in TERMINAL]
    assert {to for frm, to in ALLOWED if frm is Status.NOT_START} == set(Status) - {
        Status.NOT_START
    }


def test_progress_only_goes_up_while_running() -> None:
    state = TaskState(status=Status.IN_PROGRESS, progress=50)
    assert decide(state, obs(Status.IN_PROGRESS, 70)).progress == 70
    lower = decide(state, obs(Status.IN_PROGRESS, 30))
    assert (lower.outcome, lower.progress) == ("duplicate", 50)
    assert decide(state, obs(Status.MODAL, 15)).progress == 50


def test_progress_is_clamped_success_is_100_and_an_ending_keeps_how_far_it_got() -> None:
    state = TaskState(status=Status.SUBMITTED)
    assert decide(state, obs(Status.IN_PROGRESS, 250)).progress == 100
    assert decide(state, obs(Status.SUCCESS, 3)).progress == 100
    running = TaskState(status=Status.IN_PROGRESS, progress=40)
    # A failed or cancelled task is not done: it keeps its last real progress, whatever the
    # provider claims alongside the ending (APIMart says FAILURE 100%).
    assert decide(running, obs(Status.FAILURE, 100)).progress == 40
    assert decide(running, obs(Status.CANCEL)).progress == 40
    assert decide(state, obs(Status.FAILURE)).progress == 0


def test_modal_is_entered_once_and_left_only_by_the_modal_call() -> None:
    modal = decide(TaskState(status=Status.SUBMITTED), obs(Status.MODAL, 15))
    assert modal.applied and modal.modal_entered
    state = TaskState(status=Status.MODAL, progress=15, modal_entered=True)
    assert decide(state, obs(Status.SUBMITTED)).outcome == "stale"
    call = Observation(status=Status.SUBMITTED, source="api", modal_call=True)
    after = decide(state, call)
    assert after.applied and after.status is Status.SUBMITTED
    again = TaskState(status=after.status, progress=after.progress, modal_entered=True)
    assert decide(again, obs(Status.MODAL)).outcome == "stale"


def test_unknown_status_is_rejected_with_the_reason() -> None:
    decision = decide(TaskState(status=Status.SUBMITTED), obs(None, detail="unknown 'WEIRD'"))
    assert (decision.outcome, decision.reason) == ("rejected", "unknown 'WEIRD'")


def test_an_observation_about_another_provider_task_is_foreign() -> None:
    state = TaskState(status=Status.SUBMITTED, provider_task_id="a")
    decision = decide(state, obs(Status.SUCCESS, provider_task_id="b"))
    assert decision.outcome == "rejected" and decision.foreign
    assert decide(state, obs(Status.SUCCESS, provider_task_id="a")).applied


def test_the_modal_call_may_name_a_new_provider_task() -> None:
    """Seed 000's example answers the modal call with another task id: the task follows it."""
    state = TaskState(status=Status.MODAL, progress=15, modal_entered=True, provider_task_id="a")
    call = Observation(status=Status.SUBMITTED, source="api", modal_call=True, provider_task_id="b")
    decision = decide(state, call)
    assert decision.applied and not decision.foreign and decision.status is Status.SUBMITTED
    # Only the modal call, and only out of MODAL: anything else naming "b" is foreign.
    assert decide(state, obs(Status.SUBMITTED, provider_task_id="b", modal_call=False)).foreign
    running = TaskState(status=Status.SUBMITTED, provider_task_id="a")
    assert decide(running, call).foreign


def test_a_late_answer_about_the_previous_provider_task_is_stale() -> None:
    state = TaskState(status=Status.SUBMITTED, provider_task_id="b", previous_provider_task_id="a")
    late = decide(state, obs(Status.MODAL, 15, provider_task_id="a"))
    assert late.outcome == "stale" and not late.foreign and "previous" in (late.reason or "")
    assert decide(state, obs(Status.IN_PROGRESS, 40, provider_task_id="b")).applied
    assert decide(state, obs(Status.IN_PROGRESS, 40, provider_task_id="c")).foreign


def test_the_modal_timer_yields_to_a_modal_call_under_way() -> None:
    timer = Observation(status=Status.CANCEL, source="timer")
    calling = TaskState(status=Status.MODAL, progress=15, modal_entered=True, modal_call_live=True)
    yielded = decide(calling, timer)
    assert yielded.outcome == "stale" and yielded.status is Status.MODAL
    assert "modal call is under way" in (yielded.reason or "")
    # The provider's own CANCEL is the provider's word; with no call under way the timer ends it.
    assert decide(calling, obs(Status.CANCEL)).applied
    idle = TaskState(status=Status.MODAL, progress=15, modal_entered=True)
    assert decide(idle, timer).applied


# --- order independence ------------------------------------------------------------------------

DONE: Result = {"images": ["https://x/1.png"], "grid_url": "https://x/g.png"}
STREAMS = {
    "success": [
        obs(Status.SUBMITTED, 0),
        obs(Status.IN_PROGRESS, 25),
        obs(Status.IN_PROGRESS, 50),
        obs(Status.IN_PROGRESS, 75),
        obs(Status.SUCCESS, 100, result=DONE),
    ],
    "failure": [
        obs(Status.SUBMITTED, 0),
        obs(Status.IN_PROGRESS, 40),
        obs(
            Status.FAILURE,
            error={"code": "provider_failed", "message": "no", "provider_code": None},
        ),
    ],
    "cancel": [obs(Status.SUBMITTED), obs(Status.IN_PROGRESS, 10), obs(Status.CANCEL)],
    "modal": [obs(Status.SUBMITTED, 5), obs(Status.MODAL, 15)],
    "skipped": [obs(Status.SUCCESS, 100, result=DONE)],
}


def fold(stream: list[Observation]) -> tuple[Status, int, object, object, list[Status]]:
    state = TaskState(status=Status.NOT_START)
    result = error = None
    seen = []
    for o in stream:
        d = decide(state, o)
        if d.applied:
            result = o.result if o.result is not None else result
            error = o.error if o.error is not None else error
        state = TaskState(status=d.status, progress=d.progress, modal_entered=d.modal_entered)
        seen.append(state.status)
    return state.status, state.progress, result, error, seen


@st.composite
def shuffled_with_duplicates(draw: st.DrawFn) -> tuple[str, list[Observation]]:
    name = draw(st.sampled_from(sorted(STREAMS)))
    stream = STREAMS[name]
    extra = draw(st.lists(st.sampled_from(stream), max_size=6))
    return name, draw(st.permutations(stream + extra))


@settings(max_examples=400, deadline=None)
@given(shuffled_with_duplicates())
def test_any_order_with_duplicates_ends_like_the_ordered_stream(
    case: tuple[str, list[Observation]],
) -> None:
    name, permuted = case
    final, progress, result, error, seen = fold(permuted)
    ordered, ordered_progress, *ordered_rest = fold(STREAMS[name])[:4]
    assert (final, result, error) == (ordered, *ordered_rest)
    if final is Status.SUCCESS or final not in TERMINAL:
        assert progress == ordered_progress
    else:  # an ending keeps how far the task got before it, which depends on the order
        assert progress <= ordered_progress
        assert progress in {0, *(o.progress for o in STREAMS[name] if o.progress is not None)}
    # Once terminal, always the same terminal.
    first_terminal = next((s for s in seen if s in TERMINAL), None)
    if first_terminal is not None:
        after = seen[seen.index(first_terminal) :]
        assert set(after) == {first_terminal}
