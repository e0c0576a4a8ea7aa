"""The store seam: what ingest, the web layer and workers need from persistence.

`open_store` picks the implementation from JOBHOOK_DATABASE_URL's scheme: SQLite (sqlite.py) or
PostgreSQL (postgres.py); tests/integration/test_store_contract.py holds both to this contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.config import POSTGRES_SCHEMES
from service.domain.plan import Change, Snapshot
from service.domain.schedule import Schedule
from service.domain.status import Decision, Status
from service.hub import Hub

#: The domain's plan for one ingest, given the snapshot the store loaded (see domain/plan.py).
Planner = Callable[[Snapshot], Change]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    id: str
    owner: str
    provider: str
    action: str
    params: Mapping[str, Any]
    parent_id: str | None = None
    metadata: Any = None
    callback_url: str | None = None
    callback_events: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyKey:
    key: str
    request_hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied:
    """What one ingested observation did, as committed."""

    task: dict[str, Any]
    event: dict[str, Any]
    decision: Decision
    from_status: Status
    #: ids of outbox rows written with the change
    deliveries: tuple[str, ...] = ()
    owner: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryClaim:
    """An outbox row leased to this process for one attempt."""

    id: str
    task_id: str
    subscriber: str
    url: str
    payload: bytes
    attempts: int
    #: whsec_ secrets to sign with (two during a rotation); empty: the per-task secret
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryResult:
    status: str  #: delivered | pending | dead
    at: float
    next_attempt_at: float
    http_status: int | None = None
    error: str | None = None
    #: how long the attempt took, and the first bytes of the answer (the attempt's record)
    duration_ms: float | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PollClaim:
    """A task leased to this process for one poll."""

    task_id: str
    provider: str
    provider_task_id: str
    status: Status
    attempts: int
    #: when the poll was due (epoch seconds): how late it runs is measured against it
    due_at: float = 0.0
    #: the task has been through MODAL and left it (its modal call was made): APIMart's docs
    #: say to poll such a task at another endpoint
    after_modal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitClaim:
    """A queued task leased to this process for one submission attempt (issue 13)."""

    task_id: str
    provider: str
    owner: str
    #: when the task was accepted (epoch seconds): its submit timeout counts from here
    queued_at: float
    #: attempts so far, this one included
    attempts: int
    #: an earlier holder's lease ran out without an answer recorded: it may have sent the task
    reclaimed: bool
    #: what to send: {"action", "params", "parent"} (params as validated, base64 included)
    request: dict[str, Any]
    #: the provider's last answer that sent the task back to the queue
    last_answer: str | None = None
    #: until when the row is leased (None: waiting, not being sent)
    lease_until: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDepth:
    """One provider's submission queue, for /metrics and /readyz."""

    waiting: int
    sending: int
    #: epoch seconds the oldest queued task was accepted (None: the queue is empty)
    oldest: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerLimits:
    """Seconds a task may stay in a status before a timer ends it."""

    modal: float
    submit: float
    queue: float
    run: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    task_id: str
    status: Status


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """What /metrics and /readyz read from the store."""

    tasks: dict[tuple[str, str], int]
    polls_due: int
    deliveries: dict[str, int]
    deliveries_due: int
    oldest_unfinished_age: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskQuery:
    owner: str
    status: Sequence[str] = ()
    provider: str | None = None
    action: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    data: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_task(
        self, new: NewTask, *, idempotency: IdempotencyKey | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Insert a NOT_START task; with a known idempotency key return the earlier task instead.

        Returns (task, created). The same key with another request body raises Conflict.
        """
        ...

    async def apply(self, task_id: str, *, dedupe_key: str | None, planner: Planner) -> Applied:
        """In one transaction: load the task's Snapshot (with how often `dedupe_key` was seen
        and the owner's subscribers), call `planner` on it (the domain decides; the store
        decides nothing), and write the Change it returns (event, version-checked task update,
        outbox rows). NotFound for an unknown task; StoreUnavailable when the task changed
        under us or the store could not commit."""
        ...

    async def reschedule(self, task_id: str, schedule: Schedule) -> None:
        """Set the next poll (and release the poll lease if `schedule.release`)."""
        ...

    async def claim_due_polls(
        self, now: float, *, limit: int, lease: float, skip: list[str] | None = None
    ) -> list[PollClaim]:
        """Lease up to `limit` tasks whose poll is due (not of the providers in `skip`);
        no two workers hold the same task."""
        ...

    async def next_poll_due(self) -> float | None:
        """The earliest time any unfinished task is due for a poll (None: nothing to poll)."""
        ...

    async def due_timers(
        self, now: float, limits: TimerLimits, *, limit: int = 100, skip: Sequence[str] = ()
    ) -> list[Due]:
        """Unfinished tasks that have stayed in their status past its limit."""
        ...

    async def reschedule_unfinished(self, now: float, *, spread: float) -> int: ...

    async def claim_modal(self, task_id: str, now: float) -> bool:
        """Claim the one modal call of a MODAL task (False: one is under way, or not MODAL).
        The MODAL timer leaves a claimed task alone while the claim lasts."""
        ...

    async def release_modal(self, task_id: str) -> None: ...

    # -- the submission queue (issue 13) --------------------------------------------------------

    async def enqueue(
        self,
        task_id: str,
        *,
        provider: str,
        owner: str,
        request: Mapping[str, Any],
        now: float,
        cap: int | None,
        lease: float,
        send_now: bool = True,
    ) -> bool:
        """Queue a new task for submission. True: it takes one of the provider's slots at once
        (nothing queued ahead of it, fewer than `cap` in flight; the caller sends it under a
        lease of `lease` s, and `request` is not kept); False: it waits for the submitter."""
        ...

    async def claim_submissions(
        self, provider: str, now: float, *, cap: int | None, limit: int, lease: float
    ) -> list[SubmitClaim]:
        """Lease up to `limit` due queued tasks of `provider`, no more than its free slots
        (`cap` minus jobs in flight, counted across processes), round-robin across owners."""
        ...

    async def release_submission(
        self,
        task_id: str,
        *,
        due_at: float,
        last_answer: str | None,
        request: Mapping[str, Any] | None = None,
    ) -> None:
        """Back to the queue (the provider refused for now), due again at `due_at`; `request`
        (what to send) is kept from now on if given (a task first sent inline has none kept)."""
        ...

    async def take_submission(self, task_id: str, now: float, *, lease: float) -> bool:
        """Lease one queued task (not one leased already): True if taken."""
        ...

    async def finish_submission(self, task_id: str) -> None:
        """The task left the queue (submitted, or ended): forget its row."""
        ...

    async def submission(self, task_id: str) -> SubmitClaim | None:
        """The queue row of a task (None: not queued)."""
        ...

    async def queued_for(self, owner: str, provider: str) -> int:
        """How many of `owner`'s tasks wait in `provider`'s queue."""
        ...

    async def queue_depths(self, now: float) -> dict[str, QueueDepth]: ...

    # -- notifications ------------------------------------------------------------------------

    async def create_endpoint(
        self, owner: str, url: str, events: list[str], description: str | None
    ) -> dict[str, Any]:
        """A new endpoint; the view carries its secret (shown once)."""
        ...

    async def list_endpoints(self, owner: str) -> list[dict[str, Any]]: ...

    async def get_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any] | None: ...

    async def delete_endpoint(self, owner: str, endpoint_id: str) -> None: ...

    async def enable_endpoint(self, owner: str, endpoint_id: str) -> dict[str, Any]: ...

    async def rotate_secret(self, owner: str, endpoint_id: str, now: float) -> dict[str, Any]: ...

    async def claim_due_deliveries(
        self, now: float, *, limit: int, lease: float, per_url: int, inflight: dict[str, int]
    ) -> list[DeliveryClaim]:
        """Lease due deliveries, the earliest per task and subscriber, at most `per_url` in
        flight per receiving URL counting `inflight`."""
        ...

    async def record_delivery(self, claim: DeliveryClaim, result: DeliveryResult) -> bool: ...

    async def next_delivery_due(self) -> float | None: ...

    async def list_deliveries(
        self, owner: str, *, status: str | None, task_id: str | None, cursor: str | None, limit: int
    ) -> Page: ...

    async def retry_delivery(self, owner: str, delivery_id: str, now: float) -> dict[str, Any]: ...

    async def get_delivery(self, owner: str, delivery_id: str) -> dict[str, Any] | None:
        """One delivery with its signed body and its last attempts (`attempt_history`)."""
        ...

    async def get_task(self, ref: str, *, owner: str | None) -> dict[str, Any] | None:
        """A task by jobhook id or provider task id; `owner=None` looks across owners."""
        ...

    async def list_tasks(self, query: TaskQuery) -> Page: ...

    async def list_events(self, task_id: str, *, cursor: str | None, limit: int) -> Page: ...

    async def stats(self, now: float) -> Stats: ...

    async def backlog(self, now: float) -> int:
        """Polls and deliveries due now (cheap: for every readiness probe)."""
        ...

    async def changed_since(
        self, since: str, *, limit: int = 500
    ) -> list[tuple[str, dict[str, Any]]]:
        """(owner, task) of tasks updated at or after `since` (RFC 3339), oldest first."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be written."""
        ...

    #: whether other processes write this store too (PostgreSQL), so every process follows it
    shared: bool

    async def follow(self, hub: Hub, ready: asyncio.Event) -> None:
        """Until cancelled: bring other processes' commits to `hub` (tasks changed, polls
        scheduled, deliveries written); `ready` is set once nothing committed from then on can
        be missed. PostgreSQL: LISTEN/NOTIFY, at once; SQLite: the change feed, a read once a
        second."""
        ...


def open_store(database_url: str, *, synchronous: str = "NORMAL") -> Store:
    """The store named by a database URL: `sqlite:///path` (the default) or
    `postgresql://user@host:port/db` (also `postgres://`), which needs the `postgres` extra."""
    if database_url.startswith("sqlite:///"):
        from service.store.sqlite import SQLiteStore

        return SQLiteStore(database_url.removeprefix("sqlite:///"), synchronous=synchronous)
    if database_url.startswith(POSTGRES_SCHEMES):
        from service.store.postgres import PostgresStore

        return PostgresStore(database_url)
    raise ValueError(f"unsupported database URL scheme: {database_url.split(':', 1)[0]}")
