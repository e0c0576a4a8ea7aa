"""No query scans (issue 11): EXPLAIN QUERY PLAN for every named query of the SQLite store.

Each case runs on a migrated file holding a few thousand tasks, events and deliveries across
several owners, once as it is in production (nothing there runs ANALYZE) and once after ANALYZE.
A plan fails on a full pass over tasks, events, outbox or endpoints (a SCAN, or an index read end
to end), on a walk through all of one owner's tasks or deliveries, and on a temp B-tree, unless
its case says why that is bounded. A named query no case covers fails too: a new query gets a
plan check here.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from service.store.base import TaskQuery
from service.store.sqlite import (
    Q,
    _migrate,
    encode_cursor,
    list_deliveries_statement,
    list_tasks_statement,
    migrations,
)

TABLES = ("tasks", "events", "outbox", "endpoints")
#: Connection settings: no plan to look at.
SETTINGS = {"wal", "synchronous_normal", "synchronous_full", "foreign_keys", "query_only"}

OWNERS = {"alpha": 2400, "beta": 900, "gamma": 400, "delta": 40}
PROVIDERS = ("apiframe", "apimart", "vtrix", "simulator")
ACTIONS = ("imagine", "upscale", "variation", "describe")
UNFINISHED = ("NOT_START", "SUBMITTED", "IN_PROGRESS", "MODAL")
FINISHED = ("SUCCESS", "SUCCESS", "SUCCESS", "FAILURE", "CANCEL")
NOW = time.time()


def _iso(moment: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
        + f".{int(moment * 1000) % 1000:03d}Z"
    )


def _task_id(n: int) -> str:
    return f"task_{n:026d}"  # the width of a real id; creation order is id order


def fill(conn: sqlite3.Connection) -> None:
    """3,740 tasks (about 8% unfinished) over 40 days, 3 events each, a delivery for half of
    them (some pending, most delivered), two endpoints per owner, some idempotency keys."""
    rng = random.Random(11)
    owners = [owner for owner, count in OWNERS.items() for _ in range(count)]
    rng.shuffle(owners)
    tasks, events, outbox, keys = [], [], [], []
    for n, owner in enumerate(owners):
        created = NOW - 40 * 86400 + n * 900
        unfinished = rng.random() < 0.08
        status = rng.choice(UNFINISHED if unfinished else FINISHED)
        provider_task_id = None if status == "NOT_START" else f"prov-{n}"
        polled = unfinished and provider_task_id is not None
        tasks.append(
            {
                "id": _task_id(n),
                "owner": owner,
                "provider": rng.choice(PROVIDERS),
                "action": rng.choice(ACTIONS),
                "status": status,
                "provider_task_id": provider_task_id,
                "created_at": _iso(created),
                "updated_at": _iso(created + 60),
                "finished_at": None if unfinished else _iso(created + 60),
                "next_poll_at": NOW + rng.uniform(-300, 900) if polled else None,
                "poll_lease_until": NOW + 30 if polled and rng.random() < 0.2 else None,
                "status_since": created + 60,
            }
        )
        for e in range(3):
            events.append((f"evt_{n:024d}{e}", _task_id(n), _iso(created + e), f"dk-{n}-{e}"))
        if rng.random() < 0.5:
            pending = unfinished and rng.random() < 0.6
            status = "pending" if pending else rng.choice(("delivered", "delivered", "dead"))
            endpoint = f"ep_{owner}_{n % 2}"
            outbox.append(
                (f"dlv_{n:024d}", _task_id(n), owner, endpoint, f"https://{endpoint}.example/",
                 status, NOW + rng.uniform(-300, 300), _iso(created))
            )  # fmt: skip
        if rng.random() < 0.2:
            keys.append((owner, f"key-{n}", "hash", _task_id(n), _iso(created)))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO tasks (id, owner, provider, action, status, provider_task_id, params,"
        " created_at, updated_at, finished_at, next_poll_at, poll_lease_until, status_since)"
        " VALUES (:id, :owner, :provider, :action, :status, :provider_task_id, '{}', :created_at,"
        " :updated_at, :finished_at, :next_poll_at, :poll_lease_until, :status_since)",
        tasks,
    )
    conn.executemany(
        "INSERT INTO events (id, task_id, source, type, outcome, from_status, received_at,"
        " dedupe_key) VALUES (?, ?, 'poll', 'task.progress', 'applied', 'SUBMITTED', ?, ?)",
        events,
    )
    conn.executemany(
        "INSERT INTO endpoints (id, owner, url, events, secret, created_at, deleted_at)"
        " VALUES (?, ?, ?, '[]', 'whsec_x', ?, ?)",
        [
            (f"ep_{owner}_{k}", owner, f"https://ep_{owner}_{k}.example/", _iso(NOW), None)
            for owner in OWNERS
            for k in range(2)
        ]
        + [
            (f"ep_{owner}_gone", owner, "https://gone.example/", _iso(NOW), _iso(NOW))
            for owner in OWNERS
        ],
    )
    conn.executemany(
        "INSERT INTO outbox (id, task_id, owner, subscriber, url, event_type, sequence, payload,"
        " status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'task.succeeded', 1, '{}',"
        " ?, ?, ?)",
        outbox,
    )
    conn.executemany("INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?)", keys)
    conn.execute("COMMIT")


@pytest.fixture(scope="module", params=["fresh", "analyzed"])
def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sqlite3.Connection]:
    """`fresh`: no statistics, as every production file is (the OR lookup this test was written
    for walked the owner's tasks only there); `analyzed`: after ANALYZE, as at scale."""
    path = tmp_path_factory.mktemp("plans") / f"{request.param}.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    _migrate(conn)
    fill(conn)
    if request.param == "analyzed":
        conn.execute("ANALYZE")
    yield conn
    conn.close()


# -- the cases ------------------------------------------------------------------------------------

OWNER = "alpha"


@dataclass(frozen=True)
class Sample:
    """Real values out of the filled file, for realistic parameters."""

    task: dict[str, Any]  # an unfinished task of OWNER with a provider task id and a delivery
    delivery: dict[str, Any]
    endpoint: str
    idempotency_key: str

    @classmethod
    def of(cls, conn: sqlite3.Connection) -> Sample:
        task = conn.execute(
            "SELECT tasks.* FROM tasks JOIN outbox ON outbox.task_id = tasks.id"
            " WHERE tasks.owner = ? AND tasks.finished_at IS NULL"
            " AND tasks.provider_task_id IS NOT NULL ORDER BY tasks.id LIMIT 1",
            (OWNER,),
        ).fetchone()
        delivery = conn.execute("SELECT * FROM outbox WHERE task_id = ?", (task["id"],)).fetchone()
        key = conn.execute("SELECT key FROM idempotency_keys WHERE owner = ?", (OWNER,)).fetchone()
        return cls(dict(task), dict(delivery), delivery["subscriber"], key[0])

    def dedupe_key(self, event: int) -> str:
        return f"dk-{int(self.task['id'].removeprefix('task_'))}-{event}"


Params = Callable[[Sample], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str
    params: Params
    #: the named blocks this case runs (a list's head, fragments and end); default: `name`
    covers: tuple[str, ...] = ()
    #: how to build the SQL when it is composed (the lists)
    statement: Callable[[], tuple[str, dict[str, Any]]] | None = None
    #: beginnings of plan lines (aliases resolved to table names) allowed here, and why the
    #: work they stand for is bounded
    allow: dict[str, str] = field(default_factory=dict)

    def sql(self, sample: Sample) -> tuple[str, dict[str, Any]]:
        if self.statement is None:
            return Q[self.name], self.params(sample)
        sql, params = self.statement()
        return sql, {**params, **self.params(sample)}

    @property
    def names(self) -> tuple[str, ...]:
        return self.covers or (self.name,)


def _none(_: Sample) -> dict[str, Any]:
    return {}


def _task_columns(s: Sample) -> dict[str, Any]:
    return {**s.task, "old_version": s.task["version"]}


def _list(query: TaskQuery, *fragments: str, allow: dict[str, str] | None = None) -> Case:
    return Case(
        "list_tasks",
        _none,
        covers=("list_tasks", *(f"list_tasks_{f}" for f in fragments), "list_tasks_end"),
        statement=lambda: list_tasks_statement(query),
        allow=allow or {},
    )


def _deliveries(*fragments: str, allow: dict[str, str] | None = None, **filters: Any) -> Case:
    args = {"status": None, "task_id": None, "cursor": None, "limit": 50, **filters}
    return Case(
        "list_deliveries",
        _none,
        covers=(
            "list_deliveries",
            *(f"list_deliveries_{f}" for f in fragments),
            "list_deliveries_end",
        ),
        statement=lambda: list_deliveries_statement(OWNER, **args),
        allow=allow or {},
    )


#: Unfiltered, each of the owner's rows is a match: the walk in id order stops after one page.
PAGE = {
    "SEARCH tasks USING INDEX tasks_owner_id (owner=?": "one page, in id order",
    "SEARCH outbox USING INDEX outbox_owner (owner=?": "one page, in id order",
}
#: One cursor into the middle of OWNER's history.
CURSOR = encode_cursor(_task_id(1900))
#: A min()/max() over an indexed expression reads one index entry: SQLite shows that as a SEARCH
#: with no range, like a pass over the whole index; these are the min() cases.
FIRST_ENTRY = "min() reads the first entry of the index"
#: created_at ranges ride the walk through the owner's tasks in id order: created_at is the
#: creation time as ids are, so a page is met after skipping the rows newer than the range. An
#: index on (owner, created_at) would sort the whole range instead: 430 ms for a 200,000-task
#: range against 0.2 ms for the walk, measured when this was written. Its wins, an empty or a
#: far-back range (the walk: 110 ms over 200,000 tasks), are the rarer asks.
CREATED_WALK = {
    "SEARCH tasks USING INDEX tasks_owner_id (owner=?)": "created_at follows id order",
    "SEARCH tasks USING INDEX tasks_owner_id (owner=? AND id<?)": "created_at follows id order",
}

#: Round-robin across owners orders one provider's due queued rows by when each owner was last
#: served: the rows waiting for one provider, a bounded set (JOBHOOK_QUEUE_PER_OWNER per owner).
QUEUE_ORDER = "the due rows of one provider's submission queue"

CASES = [
    # Migrations.
    Case("create_schema_version", _none),
    Case("schema_version", _none),
    # Submitting, ingesting: the writer.
    Case("find_idempotency_key", lambda s: {"owner": OWNER, "key": s.idempotency_key}),
    Case(
        "insert_task",
        lambda s: {
            **dict.fromkeys(("parent_id", "metadata", "callback_url", "callback_events")),
            "id": "task_new",
            "owner": OWNER,
            "provider": "vtrix",
            "action": "imagine",
            "params": "{}",
            "created_at": _iso(NOW),
            "status_since": NOW,
        },
    ),
    Case(
        "insert_idempotency_key",
        lambda s: {
            "owner": OWNER,
            "key": "k",
            "request_hash": "h",
            "task_id": s.task["id"],
            "created_at": _iso(NOW),
        },
    ),
    Case("task_by_id", lambda s: {"id": s.task["id"]}),
    Case(
        "load_for_ingest",
        lambda s: {"task_id": s.task["id"], "dedupe_key": s.dedupe_key(1)},
    ),
    Case(
        "insert_event",
        lambda s: {
            **dict.fromkeys(("to_status", "progress", "detail", "dedupe_key", "raw")),
            "id": "evt_new",
            "task_id": s.task["id"],
            "source": "poll",
            "type": "task.progress",
            "outcome": "applied",
            "from_status": "SUBMITTED",
            "received_at": _iso(NOW),
        },
    ),
    Case("count_repeat", lambda s: {"task_id": s.task["id"], "dedupe_key": s.dedupe_key(2)}),
    Case("update_task", _task_columns),
    Case(
        "insert_outbox",
        lambda s: {**s.delivery, "id": "dlv_new", "next_attempt_at": NOW},
    ),
    # Polls, timers, the modal call.
    Case(
        "reschedule_poll",
        lambda s: {"id": s.task["id"], "next_poll_at": NOW + 5, "attempts": 1, "release": True},
    ),
    Case(
        "claim_due_polls",
        lambda s: {"now": NOW, "lease_until": NOW + 60, "skip": '["vtrix"]', "limit": 16},
    ),
    Case("next_poll_due", _none, allow={"SEARCH tasks USING INDEX tasks_poll_ready": FIRST_ENTRY}),
    Case(
        "reschedule_unfinished",
        lambda s: {"now": NOW, "spread": 30.0},
        # Once per worker start, and it moves every unfinished task by design: any index of
        # unfinished tasks only will do.
        allow={
            f"SCAN tasks USING {kind}INDEX {index}": "startup only, every unfinished task"
            for kind in ("", "COVERING ")
            for index in (
                "tasks_poll_due",
                "tasks_status_since",
                "tasks_unfinished_provider",
                "tasks_unfinished_created",
            )
        },
    ),
    Case(
        "due_timers",
        lambda s: {
            "modal_since": NOW - 600,
            "modal_call_before": NOW - 60,
            "submit_since": NOW - 3600,
            "queue_since": NOW - 3600,
            "run_since": NOW - 7200,
            "skip": '["task_x"]',
            "limit": 100,
        },
    ),
    Case("claim_modal", lambda s: {"id": s.task["id"], "now": NOW, "claimed_before": NOW - 60}),
    Case("release_modal", lambda s: {"id": s.task["id"]}),
    Case("ping", _none),
    # A task by id or provider id, with its owner and across owners.
    Case("get_task", lambda s: {"ref": s.task["id"], "owner": OWNER}),
    Case("get_task", lambda s: {"ref": s.task["provider_task_id"], "owner": OWNER}),
    Case("get_task", lambda s: {"ref": s.task["id"], "owner": None}),
    Case("get_task", lambda s: {"ref": s.task["provider_task_id"], "owner": None}),
    Case("get_task", lambda s: {"ref": "nothing-by-that-name", "owner": OWNER}),
    # The task list, with each filter and the cursor.
    _list(TaskQuery(owner=OWNER), allow=PAGE),
    _list(TaskQuery(owner=OWNER, cursor=CURSOR), "cursor", allow=PAGE),
    _list(TaskQuery(owner=OWNER, status=["IN_PROGRESS"]), "status"),
    _list(TaskQuery(owner=OWNER, status=["SUCCESS"], cursor=CURSOR), "status", "cursor"),
    _list(
        TaskQuery(owner=OWNER, status=["SUBMITTED", "IN_PROGRESS"]),
        "statuses",
        # No index gives id order across several statuses without sorting every row of theirs;
        # the walk stops after a page of matches. One status (the dashboard's filter) is a
        # page straight from tasks_owner_status.
        allow={
            "SEARCH tasks USING INDEX tasks_owner_id (owner=?)": "several statuses",
            "SEARCH tasks USING INDEX tasks_owner_id (owner=? AND id<?)": "several statuses",
        },
    ),
    _list(TaskQuery(owner=OWNER, provider="vtrix"), "provider"),
    _list(TaskQuery(owner=OWNER, action="upscale"), "action"),
    _list(
        TaskQuery(owner=OWNER, provider="vtrix", action="upscale", cursor=CURSOR),
        "provider",
        "action",
        "cursor",
    ),
    _list(
        TaskQuery(owner=OWNER, created_after=_iso(NOW - 86400)),
        "created_after",
        allow=CREATED_WALK,
    ),
    _list(
        TaskQuery(owner=OWNER, created_before=_iso(NOW - 20 * 86400), cursor=CURSOR),
        "created_before",
        "cursor",
        allow=CREATED_WALK,
    ),
    _list(
        TaskQuery(
            owner=OWNER, created_after=_iso(NOW - 10 * 86400), created_before=_iso(NOW - 86400)
        ),
        "created_after",
        "created_before",
        allow=CREATED_WALK,
    ),
    Case("list_events", lambda s: {"task_id": s.task["id"], "after": "", "limit": 51}),
    Case("list_events", lambda s: {"task_id": s.task["id"], "after": "evt_1", "limit": 51}),
    Case("changed_since", lambda s: {"since": _iso(NOW - 3600), "limit": 500}),
    # /readyz and /metrics.
    Case("backlog", lambda s: {"now": NOW}),
    Case(
        "stats_tasks",
        _none,
        allow={
            # The unfinished tasks are the working set; counted in the partial index alone
            # (finished ones come from task_counts).
            "SCAN tasks USING COVERING INDEX tasks_unfinished_provider": "unfinished only",
        },
    ),
    Case("stats_polls_due", lambda s: {"now": NOW}),
    Case("stats_deliveries", lambda s: {"now": NOW}),
    Case(
        "oldest_unfinished",
        _none,
        allow={"SEARCH tasks USING INDEX tasks_unfinished_created": FIRST_ENTRY},
    ),
    # Endpoints.
    Case(
        "insert_endpoint",
        lambda s: {
            "id": "ep_new",
            "owner": OWNER,
            "url": "https://x.example/",
            "events": "[]",
            "description": None,
            "secret": "whsec_y",
            "created_at": _iso(NOW),
        },
    ),
    Case("endpoint_by_id", lambda s: {"id": s.endpoint}),
    Case("live_endpoint", lambda s: {"id": s.endpoint, "owner": OWNER}),
    Case(
        "list_endpoints",
        lambda s: {"owner": OWNER},
        # The owner's live endpoints are what is asked for, and they are a handful.
        allow={"SEARCH endpoints USING INDEX endpoints_live (owner=?)": "all of them are asked"},
    ),
    Case("delete_endpoint", lambda s: {"id": s.endpoint, "now": _iso(NOW)}),
    Case("enable_endpoint", lambda s: {"id": s.endpoint}),
    Case(
        "rotate_secret",
        lambda s: {
            "id": s.endpoint,
            "secret": "whsec_z",
            "previous_secret": "whsec_x",
            "previous_secret_until": NOW + 86400,
        },
    ),
    Case("endpoint_secrets", lambda s: {"id": s.endpoint}),
    Case("endpoint_recovered", lambda s: {"id": s.endpoint}),
    Case("endpoint_failing", lambda s: {"id": s.endpoint, "at": NOW}),
    Case("disable_endpoint", lambda s: {"id": s.endpoint, "now": _iso(NOW), "reason": "gone"}),
    # Deliveries.
    Case("bury", lambda s: {"subscriber": s.endpoint, "reason": "gone"}),
    Case(
        "claim_due_deliveries",
        lambda s: {
            "now": NOW,
            "lease_until": NOW + 60,
            "per_url": 4,
            "limit": 32,
            "inflight": '{"https://ep_alpha_0.example/": 2}',
        },
        allow={
            # The distinct receiving URLs, skipped through outbox_pending_url: min() of the
            # index, then of the part past the URL before, one probe per receiver.
            "SEARCH outbox USING INDEX outbox_pending_url": FIRST_ENTRY,
            # Both sorts are over at most per_url candidates per URL: ranking them per URL and
            # handing out the earliest. They are the work about to be leased.
            "USE TEMP B-TREE FOR ORDER BY": "at most per_url rows per receiving URL",
        },
    ),
    Case("next_delivery_due", _none, allow={"SEARCH outbox USING INDEX outbox_ready": FIRST_ENTRY}),
    Case(
        "record_delivery",
        lambda s: {
            "id": s.delivery["id"],
            "status": "delivered",
            "attempts": 1,
            "next_attempt_at": NOW,
            "last_status": 200,
            "last_error": None,
            "now": _iso(NOW),
        },
    ),
    Case("retry_delivery", lambda s: {"id": s.delivery["id"], "owner": OWNER, "now": NOW}),
    Case("delivery_by_id", lambda s: {"id": s.delivery["id"], "owner": OWNER}),
    # A delivery's attempt history (issue 15), and each endpoint's counts.
    Case(
        "insert_delivery_attempt",
        lambda s: {
            "id": s.delivery["id"],
            "attempt": 1,
            "at": _iso(NOW),
            "duration_ms": 12.5,
            "http_status": 200,
            "response": "ok",
            "error": None,
        },
    ),
    Case("trim_delivery_attempts", lambda s: {"id": s.delivery["id"], "keep": 20}),
    Case("delivery_attempts", lambda s: {"id": s.delivery["id"], "keep": 20}),
    Case(
        "count_endpoint_attempt",
        lambda s: {"id": s.endpoint, "ok": 0, "now": _iso(NOW), "error": "answered 500"},
    ),
    # The delivery log, with each filter and the cursor.
    _deliveries(allow=PAGE),
    _deliveries("cursor", allow=PAGE, cursor=encode_cursor(f"dlv_{1900:024d}")),
    _deliveries("status", status="dead"),
    _deliveries("status", "cursor", status="pending", cursor=encode_cursor(f"dlv_{1900:024d}")),
    _deliveries("task_id", task_id=_task_id(12)),
    # The submission queue (issue 13): its own small table, rows only while tasks wait.
    Case(
        "queue_insert",
        lambda s: {
            "task_id": "task_new",
            "provider": "vtrix",
            "owner": OWNER,
            "now": NOW,
            "lease_until": None,
            "request": "{}",
        },
    ),
    Case("queue_room", lambda s: {"provider": "vtrix", "now": NOW, "capped": True, "most": 8}),
    Case(
        "queue_next",
        lambda s: {"provider": "vtrix", "now": NOW},
        allow={"USE TEMP B-TREE FOR ORDER BY": QUEUE_ORDER},
    ),
    Case(
        "queue_claim",
        lambda s: {"task_id": s.task["id"], "lease_until": NOW + 60, "reclaimed": 0},
    ),
    Case("queue_turn", lambda s: {"provider": "vtrix", "owner": OWNER, "served_at": NOW}),
    Case(
        "queue_release",
        lambda s: {
            "task_id": s.task["id"],
            "due_at": NOW + 5,
            "last_answer": "429",
            "request": None,
        },
    ),
    Case(
        "queue_take",
        lambda s: {"task_id": s.task["id"], "now": NOW, "lease_until": NOW + 60},
    ),
    Case("queue_delete", lambda s: {"task_id": s.task["id"]}),
    Case("queue_row", lambda s: {"task_id": s.task["id"]}),
    Case("queue_owner_depth", lambda s: {"owner": OWNER, "provider": "vtrix"}),
    Case("queue_stats", lambda s: {"now": NOW}),
]


# -- the checks -----------------------------------------------------------------------------------

_ALIAS = re.compile(r"\b(tasks|events|outbox|endpoints)\s+(?:AS\s+)?([a-z]\w*)\b")
_ACCESS = re.compile(r"^(SCAN|SEARCH) (\w+)(.*)$")
#: The big tables' columns whose walk alone reads all of one owner's rows.
_OWNER_WALK = re.compile(r"^SEARCH (tasks|outbox) USING .*\((owner=\?(?: AND id<\?)?)\)$")
#: `x IS NOT NULL` is planned as the range `x>?` (NULLs sort first): every row that has an x.
_LOWER_BOUND = re.compile(r"\((?:\w+=\? AND )*(\w+)>\?\)$")


def plan(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[str]:
    """The plan's lines, each table alias replaced by its table's name."""
    aliases = {alias: table for table, alias in _ALIAS.findall(sql)}
    lines = []
    for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params):
        detail = row["detail"]
        if m := _ACCESS.match(detail):
            detail = f"{m[1]} {aliases.get(m[2], m[2])}{m[3]}"
        lines.append(detail)
    return lines


def problems(lines: list[str], allow: dict[str, str], sql: str) -> list[str]:
    found = []
    for line in lines:
        if any(line.startswith(allowed) for allowed in allow):
            continue
        access = _ACCESS.match(line)
        on_table = access is not None and access[2] in TABLES
        bound = _LOWER_BOUND.search(line)
        if on_table and access is not None and access[1] == "SCAN":
            found.append(f"a scan: {line}")
        elif on_table and "(" not in line:
            found.append(f"a pass over a whole index: {line}")
        elif bound and not re.search(rf"\b{bound[1]}\s*>", sql):
            found.append(f"IS NOT NULL read as a range, a pass over the index: {line}")
        elif _OWNER_WALK.match(line):
            found.append(f"a walk through all of one owner's rows: {line}")
        elif "TEMP B-TREE" in line:
            found.append(f"a sort: {line}")
        elif "AUTOMATIC" in line:
            found.append(f"an index built for one query: {line}")
    return found


def _case_id(case: Case) -> str:
    same = [c for c in CASES if c.name == case.name]
    return case.name if len(same) == 1 else f"{case.name}-{same.index(case)}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_plan_finds_rows_through_an_index(db: sqlite3.Connection, case: Case) -> None:
    sample = Sample.of(db)
    sql, params = case.sql(sample)
    for name in case.names:
        assert Q[name] in sql, f"{name} is not part of the statement checked"
    lines = plan(db, sql, params)
    assert not problems(lines, case.allow, sql), "\n".join(["", sql, "--", *lines])


def test_every_named_query_has_a_plan_check() -> None:
    covered = {name for case in CASES for name in case.names}
    assert all(Q[name].startswith("PRAGMA") for name in SETTINGS)
    assert set(Q) - SETTINGS - covered == set(), "named queries without a plan check"
    assert covered - set(Q) == set(), "plan checks of queries that no longer exist"


def test_the_checks_catch_what_they_are_for(db: sqlite3.Connection) -> None:
    """The lookup that made issue 11, and a count over every task, fail these checks."""
    old_lookup = (
        "SELECT * FROM tasks WHERE (id = :ref OR provider_task_id = :ref) AND owner = :owner"
        " ORDER BY id DESC LIMIT 1"
    )
    lines = plan(db, old_lookup, {"ref": "prov-5", "owner": OWNER})
    # Without statistics it walks the owner's tasks; with them, two lookups and a sort.
    assert problems(lines, {}, old_lookup)
    count = "SELECT provider, status, count(*) FROM tasks GROUP BY provider, status"
    assert any(p.startswith("a scan") for p in problems(plan(db, count, {}), {}, count))
    every = "UPDATE tasks SET next_poll_at = 0 WHERE provider_task_id IS NOT NULL"
    assert any(p.startswith("IS NOT NULL") for p in problems(plan(db, every, {}), {}, every))


def test_counters_agree_with_counting_every_row(tmp_path: Path) -> None:
    """/metrics reads finished tasks and deliveries from counters (migration 0007's triggers
    keep them, starting from the rows already there): they say what counting every row says,
    through finishes, retries, deliveries and deletes."""
    conn = sqlite3.connect(tmp_path / "counters.sqlite3", isolation_level=None)
    conn.execute(Q["create_schema_version"])
    for version, sql in migrations():
        if version < 7:  # a file from before the counters, with rows in it
            conn.executescript(sql)
            conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    fill(conn)
    _migrate(conn)

    def agree() -> None:
        tasks = "SELECT provider, status, count(*) FROM tasks GROUP BY provider, status"
        assert set(conn.execute(Q["stats_tasks"])) == set(conn.execute(tasks))
        deliveries = (
            "SELECT status, count(*), CASE WHEN status = 'pending'"
            " THEN sum(next_attempt_at <= :now) END FROM outbox"
            " WHERE status != 'delivered' GROUP BY status"
        )
        now = {"now": NOW}
        assert set(conn.execute(Q["stats_deliveries"], now)) == set(conn.execute(deliveries, now))

    agree()
    finish = "UPDATE tasks SET status = ?, finished_at = 'x' WHERE id IN (SELECT id FROM tasks"
    conn.execute(
        finish + " WHERE finished_at IS NULL AND provider = 'vtrix' LIMIT 30)", ["FAILURE"]
    )
    conn.execute(finish + " WHERE finished_at IS NULL LIMIT 40)", ["SUCCESS"])
    conn.execute("UPDATE tasks SET progress = 50 WHERE finished_at IS NULL")
    conn.execute("UPDATE outbox SET status = 'pending' WHERE status = 'dead'")  # retried
    conn.execute(
        "UPDATE outbox SET status = 'delivered' WHERE rowid % 3 = 0 AND status = 'pending'"
    )
    conn.execute("UPDATE outbox SET status = 'dead' WHERE rowid % 3 = 1 AND status = 'pending'")
    conn.execute("UPDATE outbox SET attempts = attempts + 1")
    conn.execute("DELETE FROM outbox WHERE rowid % 5 = 0")
    conn.execute("DELETE FROM events")
    conn.execute("DELETE FROM idempotency_keys")
    conn.execute("DELETE FROM tasks WHERE rowid % 7 = 0 AND id NOT IN (SELECT task_id FROM outbox)")
    agree()
    conn.close()
