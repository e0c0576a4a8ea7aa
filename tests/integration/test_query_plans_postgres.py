"""No query scans on PostgreSQL (issue 11): EXPLAIN (FORMAT JSON) for every named query of the
PostgreSQL store, as tests/integration/test_query_plans.py does for SQLite.

Each case runs on a migrated database holding a few thousand tasks, events and deliveries across
several owners, once as it is right after they were written (no statistics: autovacuum is off for
its tables) and once after VACUUM ANALYZE, with `enable_seqscan = off`: PostgreSQL then reads a
table through an index whenever one can serve the query, so a Seq Scan that remains means that
no index can. A plan fails on a Seq Scan of tasks, events, outbox or endpoints, in any node (CTEs,
init plans and subplans are nodes too), and on a pass over the whole of one of their indexes (an
index scan with no index condition: what the planner reads instead of a table it may not scan)
unless the index holds only the working set (WORKING_SET), or its case says why that is bounded.
A named query no case covers fails too: a new query gets a plan check here.

Which index among several serves, and whether a page of a list comes in index order or is
sorted, are the planner's to choose by its estimates (they change with the data's size and
shape), so they are not checked here; the SQLite test, whose planner does not weigh them so,
checks both.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import pytest
import pytest_asyncio

from service.domain.ids import new_id
from service.domain.models import Observation
from service.domain.status import Status
from service.store.base import DeliveryResult, NewTask
from service.store.postgres import _TOP as TOP
from service.store.postgres import PostgresStore
from service.store.postgres_db import SQL, Q, Query, composed, migrations
from tests.support.ingest import apply
from tests.support.postgres import fresh_database

#: The tests on the module's filled databases run in the event loop their fixture opened them in.
on_module_loop = pytest.mark.asyncio(loop_scope="module")

TABLES = ("tasks", "events", "outbox", "endpoints")

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


def _delivery_id(n: int) -> str:
    return f"dlv_{n:024d}"


async def fill(conn: Any) -> None:
    """3,740 tasks (about 8% unfinished) over 40 days, 3 events each, a delivery for half of
    them (some pending, most delivered), two live endpoints per owner and a deleted one, some
    idempotency keys: the rows of test_query_plans.py's SQLite file."""
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
            (_task_id(n), owner, rng.choice(PROVIDERS), rng.choice(ACTIONS), status,
             provider_task_id, "{}", _iso(created), _iso(created + 60),
             None if unfinished else _iso(created + 60),
             NOW + rng.uniform(-300, 900) if polled else None,
             NOW + 30 if polled and rng.random() < 0.2 else None, created + 60)
        )  # fmt: skip
        for e in range(3):
            events.append(
                (f"evt_{n:024d}{e}", _task_id(n), "poll", "task.progress", "applied", "SUBMITTED",
                 _iso(created + e), f"dk-{n}-{e}", 0)
            )  # fmt: skip
        if rng.random() < 0.5:
            pending = unfinished and rng.random() < 0.6
            state = "pending" if pending else rng.choice(("delivered", "delivered", "dead"))
            endpoint = f"ep_{owner}_{n % 2}"
            outbox.append(
                (_delivery_id(n), _task_id(n), owner, endpoint, f"https://{endpoint}.example/",
                 "task.succeeded", 1, "{}", state, NOW + rng.uniform(-300, 300), _iso(created))
            )  # fmt: skip
        if rng.random() < 0.2:
            keys.append((owner, f"key-{n}", "hash", _task_id(n), _iso(created)))
    endpoints = [
        (f"ep_{owner}_{k}", owner, f"https://ep_{owner}_{k}.example/", "[]", "whsec_x", _iso(NOW),
         None)
        for owner in OWNERS
        for k in range(2)
    ] + [
        (f"ep_{owner}_gone", owner, "https://gone.example/", "[]", "whsec_x", _iso(NOW),
         _iso(NOW))
        for owner in OWNERS
    ]  # fmt: skip
    async with conn.transaction():
        await conn.copy_records_to_table(
            "tasks",
            records=tasks,
            columns=("id", "owner", "provider", "action", "status", "provider_task_id", "params",
                     "created_at", "updated_at", "finished_at", "next_poll_at",
                     "poll_lease_until", "status_since"),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "events",
            records=events,
            columns=("id", "task_id", "source", "type", "outcome", "from_status", "received_at",
                     "dedupe_key", "dedupe_seq"),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "endpoints",
            records=endpoints,
            columns=("id", "owner", "url", "events", "secret", "created_at", "deleted_at"),
        )
        await conn.copy_records_to_table(
            "outbox",
            records=outbox,
            columns=("id", "task_id", "owner", "subscriber", "url", "event_type", "sequence",
                     "payload", "status", "next_attempt_at", "created_at"),
        )  # fmt: skip
        await conn.copy_records_to_table(
            "idempotency_keys",
            records=keys,
            columns=("owner", "key", "request_hash", "task_id", "created_at"),
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["fresh", "analyzed"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A migrated, filled database. `fresh`: no statistics yet (autovacuum, which would gather
    them at some moment, is off for these tables); `analyzed`: after ANALYZE, as at scale."""
    async with fresh_database() as url:
        store = PostgresStore(url)
        await store.open()
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            for table in (*TABLES, "idempotency_keys"):
                await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            await fill(conn)
            if request.param == "analyzed":
                await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def conn(db: str) -> AsyncIterator[Any]:
    """A connection to `db` on which no plan reads a table from end to end if an index can
    serve: Seq Scans cost 10^10 more than they would."""
    connection = await asyncpg.connect(db)
    await connection.execute("SET enable_seqscan = off")
    try:
        yield connection
    finally:
        await connection.close()


# -- the cases ------------------------------------------------------------------------------------

OWNER = "alpha"


@dataclass(frozen=True)
class Sample:
    """Real values out of the filled database, for realistic parameters."""

    task: dict[str, Any]  # an unfinished task of OWNER with a provider task id and a delivery
    delivery: dict[str, Any]
    endpoint: str
    idempotency_key: str
    event: str  # the task's first event: a cursor

    @classmethod
    async def of(cls, conn: Any) -> Sample:
        task = await conn.fetchrow(
            "SELECT tasks.* FROM tasks JOIN outbox ON outbox.task_id = tasks.id"
            " WHERE tasks.owner = $1 AND tasks.finished_at IS NULL"
            " AND tasks.provider_task_id IS NOT NULL ORDER BY tasks.id LIMIT 1",
            OWNER,
        )
        delivery = await conn.fetchrow("SELECT * FROM outbox WHERE task_id = $1", task["id"])
        key = await conn.fetchval("SELECT key FROM idempotency_keys WHERE owner = $1", OWNER)
        event = await conn.fetchval("SELECT min(id) FROM events WHERE task_id = $1", task["id"])
        return cls(dict(task), dict(delivery), delivery["subscriber"], key, event)

    def dedupe_key(self, event: int) -> str:
        return f"dk-{int(self.task['id'].removeprefix('task_'))}-{event}"


Params = Callable[[Sample], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    name: str
    params: Params
    #: the filters of a list (`list_tasks_<filter>` blocks), composed as postgres.py does
    filters: tuple[str, ...] = ()
    #: beginnings of plan nodes ("Index Scan using tasks_owner_id", "Sort") allowed here, and
    #: why the work they stand for is bounded
    allow: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The named blocks this case runs."""
        if not self.filters and f"{self.name}_page" not in SQL:
            return (self.name,)
        return (self.name, *(f"{self.name}_{f}" for f in self.filters), f"{self.name}_page")

    def query(self) -> Query:
        return composed(*self.names)


def _none(_: Sample) -> dict[str, Any]:
    return {}


#: One cursor into the middle of OWNER's history.
MIDDLE = _task_id(1900)


def _listing(name: str, filters: dict[str, Any]) -> Case:
    """The list `name` with `filters` (name: value; `before` is the cursor, and without it the
    first page's), composed as postgres.py does."""
    values = {"owner": OWNER, "before": TOP, "limit": 51, **filters}
    return Case(name, lambda s: values, filters=tuple(f for f in filters if f != "before"))


def _tasks(filters: dict[str, Any]) -> Case:
    return _listing("list_tasks", filters)


def _deliveries(filters: dict[str, Any]) -> Case:
    return _listing("list_deliveries", filters)


def _change(s: Sample, **overrides: Any) -> dict[str, Any]:
    """write_change's parameters: a progress event, the task moved on, one delivery."""
    t = s.task
    values: dict[str, Any] = {
        "event_id": "evt_new",
        "task_id": t["id"],
        "source": "poll",
        "type": "task.progress",
        "outcome": "applied",
        "from_status": t["status"],
        "to_status": t["status"],
        "event_progress": 50,
        "received_at": _iso(NOW),
        "detail": None,
        "dedupe_key": s.dedupe_key(1),
        "dedupe_seq": 0,
        "raw": None,
        "write_task": True,
        "old_version": t["version"],
        "status": t["status"],
        "progress": 50,
        "modal_entered": False,
        "version": t["version"] + 1,
        "sequence": t["sequence"] + 1,
        "updated_at": _iso(NOW),
        "result": None,
        "params": "{}",
        "error": None,
        "finished_at": None,
        "provider_task_id": t["provider_task_id"],
        "previous_provider_task_id": None,
        "status_since": NOW,
        "next_poll_at": NOW + 5,
        "poll_attempts": 1,
        "poll_lease_until": None,
        "outbox_ids": ["dlv_new"],
        "outbox_task_ids": [t["id"]],
        "outbox_owners": [OWNER],
        "outbox_subscribers": [s.endpoint],
        "outbox_urls": ["https://x.example/"],
        "outbox_event_types": ["task.progress"],
        "outbox_sequences": [t["sequence"] + 1],
        "outbox_payloads": ["{}"],
        "outbox_next_attempt_ats": [NOW],
        "outbox_created_ats": [_iso(NOW)],
        "notice": '{"d": 1}',
    }
    return {**values, **overrides}


def _new_task(s: Sample) -> dict[str, Any]:
    return {
        "id": "task_new",
        "owner": OWNER,
        "provider": "vtrix",
        "action": "imagine",
        "params": "{}",
        "parent_id": None,
        "metadata": None,
        "callback_url": None,
        "callback_events": "[]",
        "now": _iso(NOW),
        "now_epoch": NOW,
    }


CASES = [
    # Migrations, under their advisory lock, once per start.
    Case("advisory_lock", lambda s: {"lock_class": 1, "lock_key": 1}),
    Case("schema_version", _none),
    Case("record_schema_version", lambda s: {"version": 99}),
    # Submitting.
    Case("insert_task", _new_task),
    Case("insert_task_once", lambda s: {**_new_task(s), "key": "k-new", "request_hash": "h"}),
    Case("idempotent_task", lambda s: {"owner": OWNER, "key": s.idempotency_key}),
    # Ingest's transaction.
    Case("lock_task", lambda s: {"id": s.task["id"]}),
    Case("load_for_ingest", lambda s: {"task_id": s.task["id"], "dedupe_key": s.dedupe_key(1)}),
    Case("write_change", _change),
    Case(
        "write_change",
        lambda s: _change(s, event_id=None, write_task=False, outbox_ids=[], notice=None),
    ),
    # Polls, timers, the modal call.
    Case(
        "reschedule",
        lambda s: {"id": s.task["id"], "next_poll_at": NOW + 5, "attempts": 1, "release": True},
    ),
    Case(
        "claim_due_polls",
        lambda s: {"now": NOW, "lease_until": NOW + 60, "skip": ["vtrix"], "limit": 16},
    ),
    Case("next_poll_due", _none),
    Case(
        "due_timers",
        lambda s: {
            "modal_before": NOW - 600,
            "modal_call_before": NOW - 60,
            "submit_before": NOW - 3600,
            "queue_before": NOW - 3600,
            "run_before": NOW - 7200,
            "skip": ["task_x"],
            "limit": 100,
        },
    ),
    Case("claim_modal", lambda s: {"id": s.task["id"], "now": NOW, "claimed_before": NOW - 60}),
    Case("release_modal", lambda s: {"id": s.task["id"]}),
    # Once per worker start, every unfinished task by design: read through a partial index of
    # unfinished tasks (the working set), then each by its id; never every task.
    Case("reschedule_unfinished", lambda s: {"now": NOW, "spread": 30.0}),
    Case("writable", _none),
    # A task by id or provider id, with its owner and across owners.
    Case("get_task", lambda s: {"ref": s.task["id"], "owner": OWNER}),
    Case("get_task", lambda s: {"ref": s.task["provider_task_id"], "owner": OWNER}),
    Case("get_task", lambda s: {"ref": s.task["id"], "owner": None}),
    Case("get_task", lambda s: {"ref": s.task["provider_task_id"], "owner": None}),
    Case("get_task", lambda s: {"ref": "nothing-by-that-name", "owner": OWNER}),
    # The task list, with each filter and the cursor.
    _tasks({}),
    _tasks({"before": MIDDLE}),
    _tasks({"status": ["IN_PROGRESS"]}),
    _tasks({"status": ["SUCCESS"], "before": MIDDLE}),
    _tasks({"status": ["SUBMITTED", "IN_PROGRESS"]}),
    _tasks({"provider": "vtrix"}),
    _tasks({"action": "upscale"}),
    _tasks({"provider": "vtrix", "action": "upscale", "before": MIDDLE}),
    _tasks({"created_after": _iso(NOW - 86400)}),
    _tasks({"created_before": _iso(NOW - 20 * 86400), "before": MIDDLE}),
    _tasks({"created_after": _iso(NOW - 10 * 86400), "created_before": _iso(NOW - 86400)}),
    Case("list_events", lambda s: {"task_id": s.task["id"], "after": "", "limit": 51}),
    Case("list_events", lambda s: {"task_id": s.task["id"], "after": s.event, "limit": 51}),
    Case("changed_since", lambda s: {"since": _iso(NOW - 3600), "limit": 500}),
    # /readyz and /metrics.
    Case("backlog", lambda s: {"now": NOW}),
    Case("stats_tasks", _none),
    Case("stats_due", lambda s: {"now": NOW}),
    Case("stats_outbox", lambda s: {"now": NOW}),
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
            "now": _iso(NOW),
        },
    ),
    Case("list_endpoints", lambda s: {"owner": OWNER}),
    Case("get_endpoint", lambda s: {"id": s.endpoint, "owner": OWNER}),
    Case(
        "delete_endpoint",
        lambda s: {"id": s.endpoint, "owner": OWNER, "now": _iso(NOW), "reason": "gone"},
    ),
    Case("enable_endpoint", lambda s: {"id": s.endpoint, "owner": OWNER}),
    Case(
        "rotate_secret",
        lambda s: {"id": s.endpoint, "owner": OWNER, "secret": "whsec_z", "until": NOW + 86400},
    ),
    Case(
        "disable_endpoint",
        lambda s: {"id": s.endpoint, "now": _iso(NOW), "reason": "gone", "dead_reason": "gone"},
    ),
    # Deliveries.
    Case(
        "claim_deliveries",
        lambda s: {
            "now": NOW,
            "lease_until": NOW + 60,
            "per_url": 4,
            "limit": 32,
            "inflight_urls": ["https://ep_alpha_0.example/"],
            "inflight_counts": [2],
        },
    ),
    Case(
        "record_delivery",
        lambda s: {
            "id": s.delivery["id"],
            "subscriber": s.endpoint,
            "status": "delivered",
            "attempts": 1,
            "next_attempt_at": NOW,
            "http_status": 200,
            "error": None,
            "now": _iso(NOW),
            "at": NOW,
            "duration_ms": 12.5,
            "response": "ok",
            "keep": 20,
        },
    ),
    Case("delivery_by_id", lambda s: {"id": s.delivery["id"], "owner": OWNER}),
    Case("delivery_attempts", lambda s: {"id": s.delivery["id"], "keep": 20}),
    Case("next_delivery_due", _none),
    Case("retry_delivery", lambda s: {"id": s.delivery["id"], "owner": OWNER, "now": NOW}),
    # The delivery log, with each filter and the cursor.
    _deliveries({}),
    _deliveries({"before": _delivery_id(1900)}),
    _deliveries({"status": "dead"}),
    _deliveries({"status": "pending", "before": _delivery_id(1900)}),
    _deliveries({"task_id": _task_id(12)}),
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
    Case("queue_next", lambda s: {"provider": "vtrix", "now": NOW}),
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
    Case("queue_lock", lambda s: {"provider": "vtrix"}),
]

#: Named statements no case EXPLAINs, and why. (The migrations themselves are files, not named
#: statements: they run once, under the migrations' advisory lock, and may read every row.)
EXEMPT = {
    "create_schema_version": "DDL, which EXPLAIN cannot plan: once per start, under the lock",
}


# -- the checks -----------------------------------------------------------------------------------

#: A pass over the whole of a partial index of these is a pass over the working set, which the
#: statements that read it (the unfinished tasks, the deliveries still to make) are about: its
#: size is what is in flight, never the history. The planner may prefer one to a few index
#: ranges when most of it matches (due_timers walking the unfinished tasks until it has enough).
WORKING_SET = {"tasks": "(finished_at IS NULL)", "outbox": "(status = 'pending'::text)"}


@dataclass(frozen=True)
class Index:
    table: str
    predicate: str | None  # of a partial index


async def indexes(conn: Any) -> dict[str, Index]:
    rows = await conn.fetch(
        "SELECT c.relname AS name, t.relname AS table, pg_get_expr(i.indpred, i.indrelid) AS pred"
        " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relnamespace = current_schema()::regnamespace"
    )
    return {r["name"]: Index(r["table"], r["pred"]) for r in rows}


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan: CTEs, init plans and subplans are children ("Plans") too."""
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


async def explain(conn: Any, query: Query, values: dict[str, Any]) -> dict[str, Any]:
    """The plan of `query` with `values` (EXPLAIN without ANALYZE: nothing runs, writes too)."""
    text = await conn.fetchval("EXPLAIN (FORMAT JSON) " + query.sql, *query.args(values))
    plan: dict[str, Any] = orjson.loads(text)[0]["Plan"]
    return plan


def describe(node: dict[str, Any]) -> str:
    """One line for a plan node: its type, index, table and conditions."""
    parts = [node["Node Type"]]
    if "Index Name" in node:
        parts.append(f"using {node['Index Name']}")
    if "Relation Name" in node:
        parts.append(f"on {node['Relation Name']}")
    for key in ("Index Cond", "Recheck Cond", "Filter", "Sort Key", "Group Key"):
        if key in node:
            parts.append(f"[{key}: {node[key]}]")
    return " ".join(str(p) for p in parts)


def render(plan: dict[str, Any]) -> list[str]:
    """The plan as indented lines, for a failure's message."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        lines.append("  " * depth + describe(node))
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    walk(plan, 0)
    return lines


def problems(plan: dict[str, Any], index: dict[str, Index], allow: dict[str, str]) -> list[str]:
    found = []
    for node in nodes(plan):
        line = describe(node)
        if any(line.startswith(allowed) for allowed in allow):
            continue
        kind = node["Node Type"]
        if kind == "Seq Scan" and node.get("Relation Name") in TABLES:
            found.append(f"a scan: {line}")
        elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
            used = index[node["Index Name"]]
            whole = "Index Cond" not in node
            bound = WORKING_SET.get(used.table)
            working_set = bound is not None and bound in (used.predicate or "")
            if whole and used.table in TABLES and not working_set:
                # With seq scans off, what a scan would be: every entry, in the index's order.
                found.append(f"a pass over a whole index: {line}")
    return found


def _case_id(case: Case) -> str:
    name = "+".join((case.name, *case.filters))
    same = [c for c in CASES if (c.name, c.filters) == (case.name, case.filters)]
    return name if len(same) == 1 else f"{name}-{same.index(case)}"


@on_module_loop
@pytest.mark.parametrize("case", CASES, ids=_case_id)
async def test_plan_finds_rows_through_an_index(conn: Any, case: Case) -> None:
    sample = await Sample.of(conn)
    plan = await explain(conn, case.query(), case.params(sample))
    found = problems(plan, await indexes(conn), case.allow)
    assert not found, "\n".join(["", case.query().sql, "--", *found, "--", *render(plan)])


def test_every_named_query_has_a_plan_check() -> None:
    covered = {name for case in CASES for name in case.names}
    assert set(SQL) - set(EXEMPT) - covered == set(), "named queries without a plan check"
    assert covered - set(SQL) == set(), "plan checks of queries that no longer exist"
    assert set(EXEMPT) <= set(SQL) - covered, "exempt, yet checked or gone"


@on_module_loop
async def test_the_checks_catch_what_they_are_for(conn: Any) -> None:
    """A filter no index serves, and the counts /metrics made before migration 0002, fail
    these checks, in a CTE or a subplan too; the working set's partial index passes."""
    index = await indexes(conn)

    async def found(sql: str) -> list[str]:
        return problems(await explain(conn, Query(sql, ()), {}), index, {})

    unindexed = await found("SELECT * FROM tasks WHERE callback_url = 'https://x.example/'")
    assert [p.split(":")[0] for p in unindexed] == ["a scan"]
    old_tasks = await found("SELECT provider, status, count(*) FROM tasks GROUP BY 1, 2")
    assert any(p.startswith("a scan: Seq Scan on tasks") for p in old_tasks)
    old_outbox = await found(
        "SELECT status, count(*), count(*) FILTER (WHERE next_attempt_at <= 0) FROM outbox"
        " WHERE status <> 'delivered' GROUP BY status"
    )
    assert any(p.startswith("a scan: Seq Scan on outbox") for p in old_outbox)
    in_cte = await found(
        "WITH x AS MATERIALIZED (SELECT * FROM outbox WHERE url = 'u') SELECT count(*) FROM x"
    )
    assert any(p.startswith("a scan: Seq Scan on outbox") for p in in_cte)
    in_subplan = await found(
        "SELECT id, (SELECT count(*) FROM endpoints p WHERE p.url = t.callback_url) FROM tasks t"
        " WHERE t.id = 'task_1'"
    )
    assert any(p.startswith("a scan: Seq Scan on endpoints") for p in in_subplan)
    every_event = await found("SELECT id FROM events ORDER BY id")
    assert any(p.startswith("a pass over a whole index") for p in every_event)
    assert await found("SELECT count(*) FROM tasks WHERE finished_at IS NULL") == []


# -- the counters ---------------------------------------------------------------------------------

#: What /metrics said before migration 0002, counting every row on each scrape: the counters
#: must say the same.
COUNTED = {
    "tasks": "SELECT provider, status, count(*)::int AS n FROM tasks GROUP BY provider, status",
    "outbox": "SELECT status, count(*)::int AS n, count(*) FILTER"
    " (WHERE status = 'pending' AND next_attempt_at <= $1)::int AS due FROM outbox GROUP BY status",
    "polls_due": "SELECT count(*)::int FROM tasks WHERE finished_at IS NULL"
    " AND next_poll_at <= $1 AND provider_task_id IS NOT NULL",
}


async def agree(conn: Any, store: PostgresStore) -> None:
    """The store's Stats, and the counters themselves, against counting every row."""
    now = time.time()
    tasks = {(r["provider"], r["status"]): r["n"] for r in await conn.fetch(COUNTED["tasks"])}
    outbox = await conn.fetch(COUNTED["outbox"], now)
    stats = await store.stats(now)
    assert stats.tasks == tasks
    assert stats.deliveries == {r["status"]: r["n"] for r in outbox if r["status"] != "delivered"}
    assert stats.deliveries_due == sum(r["due"] for r in outbox)
    assert stats.polls_due == await conn.fetchval(COUNTED["polls_due"], now)
    finished = await conn.fetch(
        "SELECT provider, status, sum(n)::int AS n FROM task_counts GROUP BY 1, 2"
    )
    assert {(r["provider"], r["status"]): r["n"] for r in finished if r["n"]} == {
        key: n for key, n in tasks.items() if key[1] in ("SUCCESS", "FAILURE", "CANCEL")
    }
    by_status = await conn.fetch("SELECT status, sum(n)::int AS n FROM delivery_counts GROUP BY 1")
    assert {r["status"]: r["n"] for r in by_status if r["n"]} == {
        r["status"]: r["n"] for r in outbox
    }


async def test_counters_agree_with_counting_every_row() -> None:
    """/metrics reads finished tasks and deliveries from counters (migration 0002's triggers
    keep them, starting from the rows already there): they say what counting every row says,
    through the store's own writes from two processes at once (tasks created and finished,
    deliveries made, failed, retried, buried), by-hand updates and deletes, and a truncate."""
    async with fresh_database() as url:
        conn = await asyncpg.connect(url)
        stores: list[PostgresStore] = []
        try:
            await conn.execute(SQL["create_schema_version"])
            for version, sql in migrations():
                if version < 2:  # a database from before the counters, with rows in it
                    await conn.execute(sql)
                    await conn.execute(Q["record_schema_version"].sql, version)
            await fill(conn)
            for _ in range(2):
                stores.append(PostgresStore(url, pool_size=4))
                await stores[-1].open()
            a, b = stores
            latest = max(version for version, _ in migrations())
            assert a.schema_version == b.schema_version == latest
            await agree(conn, a)
            await workload(conn, a, b)
            await agree(conn, b)
            await conn.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox LIMIT 100)")
            await conn.execute("DELETE FROM idempotency_keys")
            await conn.execute("DELETE FROM events")
            await conn.execute(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks WHERE status = 'SUCCESS'"
                " AND id NOT IN (SELECT task_id FROM outbox) LIMIT 200)"
            )
            await conn.execute(
                "UPDATE tasks SET provider = 'renamed' WHERE provider = 'apimart'"
            )  # every task of a provider, finished or not, moves to another
            await agree(conn, a)
            await conn.execute("TRUNCATE tasks, events, outbox, idempotency_keys")
            await agree(conn, a)
            assert await conn.fetchval("SELECT count(*) FROM task_counts") == 0
        finally:
            for store in stores:
                await store.close()
            await conn.close()


async def workload(conn: Any, a: PostgresStore, b: PostgresStore) -> None:
    """What jobhook does to tasks and deliveries, through both stores at once."""
    now = time.time()
    endpoints = {owner: await a.create_endpoint(owner, f"https://{owner}.example/", [], None)
                 for owner in ("alpha", "beta")}  # fmt: skip
    made = []
    for n in range(40):
        store = (a, b)[n % 2]
        task, _ = await store.create_task(
            NewTask(
                id=new_id("task"),
                owner=("alpha", "beta")[n % 2],
                provider=("simulator", "vtrix")[n % 3 % 2],
                action="imagine",
                params={},
                callback_url="https://cb.example/" if n % 4 == 0 else None,
            )
        )
        made.append(task["id"])
    unfinished = [
        r["id"] for r in await conn.fetch("SELECT id FROM tasks WHERE finished_at IS NULL")
    ]
    assert len(unfinished) > 100

    async def finish(n: int, task_id: str) -> None:
        store = (a, b)[n % 2]
        if n % 5 == 0:  # two observations of one task, from both processes at once
            await asyncio.gather(
                apply(a, task_id, Observation(status=Status.IN_PROGRESS, source="api")),
                apply(b, task_id, Observation(status=Status.IN_PROGRESS, source="api")),
            )
        final = (Status.SUCCESS, Status.FAILURE, Status.CANCEL)[n % 3]
        await apply(store, task_id, Observation(status=final, source="poll"))

    await asyncio.gather(*(finish(n, t) for n, t in enumerate(made[:30] + unfinished[:60])))
    await asyncio.gather(
        *(apply(a, t, Observation(status=Status.SUBMITTED, source="api")) for t in made[30:])
    )
    await agree(conn, a)
    # Deliveries: made, failed and tried again, dead, retried, and an endpoint's buried.
    for round_ in range(3):
        claims = [
            *await a.claim_due_deliveries(
                now, limit=40, lease=30, per_url=100, inflight={}
            ),
            *await b.claim_due_deliveries(
                now, limit=40, lease=30, per_url=100, inflight={}
            ),
        ]  # fmt: skip
        assert claims or round_ > 0
        outcomes = ("delivered", "pending", "dead")
        await asyncio.gather(
            *(
                (a, b)[n % 2].record_delivery(
                    claim,
                    DeliveryResult(
                        status=outcomes[n % 3], at=now, next_attempt_at=now - 1, http_status=500
                    ),
                )
                for n, claim in enumerate(claims)
            )
        )
    done = await conn.fetch("SELECT id, owner FROM outbox WHERE status <> 'pending' LIMIT 20")
    await asyncio.gather(
        *((a, b)[n % 2].retry_delivery(r["owner"], r["id"], now) for n, r in enumerate(done))
    )
    await b.delete_endpoint("beta", endpoints["beta"]["id"])
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'dead'") > 0
