"""Pure domain code: statuses, the transition rules, observations, tasks, events, ids. No I/O."""

from service.domain.ids import new_id
from service.domain.models import (
    ACTIONS,
    DEFAULT_CALLBACK_EVENTS,
    EVENT_TYPES,
    Observation,
    Outcome,
    Source,
    TaskError,
)
from service.domain.status import (
    ACTIVE,
    ALLOWED,
    TERMINAL,
    Decision,
    Status,
    TaskState,
    decide,
    event_type_for,
)

__all__ = [
    "ACTIONS",
    "ACTIVE",
    "ALLOWED",
    "DEFAULT_CALLBACK_EVENTS",
    "EVENT_TYPES",
    "TERMINAL",
    "Decision",
    "Observation",
    "Outcome",
    "Source",
    "Status",
    "TaskError",
    "TaskState",
    "decide",
    "event_type_for",
    "new_id",
]
