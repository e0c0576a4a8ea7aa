"""`jobhook bench` lookup and scale, quick (2k and 20k tasks, 1 s windows): every figure there,
positive, every request a 2xx, on SQLite and on PostgreSQL; and a seeded task has the rows a
real one has, so what the jobs measure is what the store would hold."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import orjson
import pytest

from service import bench_lookup
from service.bench import _env
from service.bench_cluster import _migrate, bench_database
from service.bench_lookup import Seeder, run_lookup, run_scale
from service.bench_report import Figure, Options
from service.config import Settings
from tests.conftest import both_stores
from tests.integration.test_api_tasks import finished, submit
from tests.support.postgres import ADMIN_URL, require_postgres

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (scripts/bench)")

JOBS: dict[str, Callable[[Options], list[Figure]]] = {"lookup": run_lookup, "scale": run_scale}
#: What each job reports, by the start of `what`.
WHATS = {
    "lookup": ["GET /v1/tasks/{id}", "GET /v1/tasks/{id}", "GET /v1/tasks/{id}"],
    "scale": [
        "GET /v1/tasks/{id}",
        "GET /v1/tasks/{provider task id}",
        "GET /v1/tasks (first page of 50)",
        "database bytes per task",
        "serve RSS idle",
        "serve RSS under lookup load",
        "non-2xx answers",
    ],
}


def _check(job: str, figures: list[Figure]) -> None:
    assert [f.what.split(",")[0] for f in figures] == WHATS[job]
    for f in figures:
        assert f.job == job
        if "non-2xx" in f.what:
            assert f.value == 0 and f.met is True, f.notes
            assert not any(note.startswith("NOT all 2xx") for note in f.notes)
        else:
            assert f.value > 0, f
            assert f.reference is None or f.reference > 0, f
    if job == "lookup":
        rps, p99, _ = figures
        assert (rps.unit, rps.ref_name, p99.unit) == ("req/s", "bare Starlette", "ms")
    else:
        assert all(f.ref_name == "at 1k tasks" and f.unit == "ms" for f in figures[:3])
        assert [f.unit for f in figures[3:6]] == ["B/task", "MB", "MB"]


@needs_wrk
@pytest.mark.parametrize("job", JOBS)
def test_the_job_on_sqlite(tmp_path: Path, job: str) -> None:
    figures = JOBS[job](Options(work=tmp_path, quick=True, seconds=1, connections=4))
    _check(job, figures)


@needs_wrk
@pytest.mark.parametrize("job", JOBS)
def test_the_job_on_postgres(tmp_path: Path, job: str) -> None:
    require_postgres()
    with bench_database(ADMIN_URL) as (url, _):
        options = Options(work=tmp_path, quick=True, seconds=1, connections=4,
                          store="postgres", database_url=url)  # fmt: skip
        _check(job, JOBS[job](options))


def test_a_database_holding_tasks_is_refused(tmp_path: Path) -> None:
    """The job fills the database it is given: one with tasks already would skew every figure
    (a SQLite file of the job's own is made anew)."""
    require_postgres()
    options = Options(work=tmp_path, seconds=1)
    bench_lookup._fresh(options, "lookup")
    Seeder(f"sqlite:///{tmp_path}/lookup.sqlite3", 1).seed_range(0, 1, sample=1)
    bench_lookup._fresh(options, "lookup")
    with bench_database(ADMIN_URL) as (url, _):
        options = Options(work=tmp_path, store="postgres", database_url=url)
        bench_lookup._fresh(options, "scale")
        Seeder(url, 1).seed_range(0, 1, sample=1)
        with pytest.raises(RuntimeError, match="already holds tasks"):
            bench_lookup._fresh(options, "scale")


def test_seeding_in_chunks_made_by_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than one chunk: two forked processes make and write them, a transaction each,
    taking turns; the tasks one chunk would have written (made at the same moments), counted
    by the store's trigger, the sample drawn from all of them."""
    monkeypatch.setattr(bench_lookup, "CHUNK", 40)
    url = f"sqlite:///{tmp_path}/chunks.sqlite3"
    _migrate(_env(tmp_path, url))
    seeder = Seeder(url, 100)
    sample = seeder.seed_range(0, 100, sample=30)
    conn = sqlite3.connect(tmp_path / "chunks.sqlite3")
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM tasks ORDER BY id")]
        (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
        counts = conn.execute("SELECT provider, status, n FROM task_counts").fetchall()
    finally:
        conn.close()
    assert len(ids) == 100 and events == 500
    made = [t[0] for t in seeder.rows(0, 100, frozenset()).tasks]
    assert [i[:15] for i in ids] == [i[:15] for i in made]  # task_ + 10 characters of time
    assert counts == [("simulator", "SUCCESS", 100)]
    assert len(set(sample.ids)) == 30 and set(sample.ids) <= set(ids)


async def _rows(url: str, task_ids: list[str]) -> list[tuple[dict[str, Any], list[Any]]]:
    """Each task's row and its events' rows, by column name."""
    task_sql = "SELECT * FROM tasks WHERE id = $1"
    events_sql = "SELECT * FROM events WHERE task_id = $1 ORDER BY id"
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            return [
                (
                    dict(conn.execute(task_sql.replace("$1", "?"), (t,)).fetchone()),
                    [dict(r) for r in conn.execute(events_sql.replace("$1", "?"), (t,))],
                )
                for t in task_ids
            ]
        finally:
            conn.close()
    pg = await asyncpg.connect(url)
    try:
        return [
            (dict(await pg.fetchrow(task_sql, t)), [dict(e) for e in await pg.fetch(events_sql, t)])
            for t in task_ids
        ]
    finally:
        await pg.close()


def _shape(value: Any) -> Any:
    """What a column holds, without the values: None, a type, or a JSON value's keys."""
    if isinstance(value, str) and value[:1] in "{[":
        decoded = orjson.loads(value)
        return sorted(decoded) if isinstance(decoded, dict) else type(decoded)
    return None if value is None else type(value)


@both_stores
async def test_a_seeded_task_has_the_rows_of_a_real_one(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """A real imagine on the simulator, and seeded tasks in the same database: the same
    columns set (kind for kind, JSON keys for JSON), events alike but for the raw payload
    (not kept by the seed); and the store reads a seeded task by id and by provider task id."""
    body = {"action": "imagine", "params": {"prompt": "a fox in the snow"}}
    real = await finished(client, (await submit(client, body))["id"])
    assert real["status"] == "SUCCESS"
    seeder = Seeder(settings.database_url, 3)
    sample = await asyncio.to_thread(seeder.seed_range, 0, 3, sample=3)
    rows = await _rows(settings.database_url, [real["id"], sample.ids[0]])
    (real_task, real_events), (seeded_task, seeded_events) = rows
    assert seeded_task["owner"] == bench_lookup.OWNER
    skip = {"owner", "poll_attempts"}  # the dev owner; polls the real task may have had
    for column in set(real_task) - skip:
        assert _shape(seeded_task[column]) == _shape(real_task[column]), column
    assert len(seeded_events) == 5
    assert real_events[0]["source"] == "api" and real_events[-1]["to_status"] == "SUCCESS"
    for real_event, seeded_event in ((real_events[0], seeded_events[0]),
                                     (real_events[-1], seeded_events[-1])):  # fmt: skip
        for column in set(real_event) - {"raw"}:
            assert _shape(seeded_event[column]) == _shape(real_event[column]), column
            if column in ("source", "type", "outcome", "from_status", "to_status"):
                assert seeded_event[column] == real_event[column], column
        assert seeded_event["dedupe_key"].split(":")[0] == real_event["dedupe_key"].split(":")[0]
    store = client.app.state.services.store  # type: ignore[attr-defined]
    by_id = await store.get_task(sample.ids[0], owner=bench_lookup.OWNER)
    by_provider_id = await store.get_task(sample.provider_ids[0], owner=bench_lookup.OWNER)
    assert by_id == by_provider_id and by_id["status"] == "SUCCESS"
    assert set(by_id) == set(real) and len(by_id["result"]["images"]) == 4
