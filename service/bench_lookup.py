"""`jobhook bench` jobs `lookup` and `scale`: reading tasks back, on a database that holds many.

- `run_lookup`: GET /v1/tasks/{id} under wrk on a jobhook holding 100,000 finished tasks,
  beside bare Starlette's route of the same shape (a ~600-byte task), one wrk script for both.
- `run_scale`: the same lookups, by id and by provider task id, and the first page of the task
  list, at 1k tasks and again once the database holds 1M; what a task weighs in the database;
  the serve process's memory, idle and under a lookup load.

Both run `jobhook serve` as a real process with one API key (its owner holds every task, so
the owner filter is in play) and fill its database straight through the schema after `jobhook
migrate` (SQLite: executemany, 50k tasks a transaction; PostgreSQL: COPY), two processes at
once: never through the API, which would take hours at 1M. A seeded task is what an `imagine`
on the simulator leaves; see `SEEDED`, `Seeder.rows` and service/store/bench_seed.sql.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import secrets
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from service.bench import _bare, _env, _port, _start, _stop, _wait, _wrk
from service.bench_cluster import _migrate
from service.bench_report import Figure, Options
from service.domain.ids import _encode
from service.domain.models import DEFAULT_CALLBACK_EVENTS, empty_result
from service.store import queries

Q = queries.load("bench_seed.sql")
#: Processes that seed are forked (spawn would run the caller's __main__ again).
FORK = multiprocessing.get_context("fork")

#: The one owner (its API key is made per run).
OWNER = "bench"
#: wrk threads.
THREADS = 2
#: Distinct task ids a wrk script cycles through (random order).
SCRIPT_IDS = 10_000
#: Requests of each kind sent (and checked: all 200) before wrk measures it.
WARM_UP = 50
#: Processes seeding at once, each making its chunks of tasks and writing them (SQLite: a
#: chunk a transaction, the two taking turns with the write lock; PostgreSQL: PG_TRANSACTION
#: tasks a transaction, written side by side).
WRITERS = 2
CHUNK = 50_000
PG_CHUNK = 20_000
PG_TRANSACTION = 500
#: Seconds a SQLite seeder may wait for the other's transaction (a chunk: a few seconds).
SQLITE_WAIT = 600.0
#: A seeded task was made this long after the one before it (1M tasks: 23 days of history).
SPACING_MS = 2_000
#: The goals (service/bench_report.py: ratios to the reference, or absolutes).
LOOKUP_RATIO = 0.6
SCALE_RATIO = 2.0
BYTES_PER_TASK = 2048
RSS_IDLE_MB = 80.0
RSS_LOAD_MB = 150.0

#: What a seeded task holds, in the notes of the figures that depend on it.
SEEDED = (
    "a seeded task is a finished simulator `imagine` as the stores write it: SUCCESS, its "
    "provider task id, a ~60-character prompt, a result with 4 image URLs, a grid URL and a cost, "
    "the default callback_events, 5 events (submitted, 3 progress, succeeded, each with its "
    "dedupe key and detail), raw payloads not kept (events.raw NULL); no outbox rows"
)

_PROMPTS = (
    "a lighthouse on a basalt cliff at dusk, volumetric fog, 35mm film",
    "isometric cutaway of a tiny ramen shop at night, warm neon, octane render",
    "portrait of an old fisherman, rembrandt lighting, oil on canvas --ar 2:3",
    "a fox sleeping in a snowy birch forest, soft morning light, telephoto",
    "retro-futurist city skyline, art deco towers, airships, golden hour --v 6",
    "macro photo of a dew drop on a fern, bokeh, ultra detailed",
    "watercolor map of an imaginary archipelago, muted palette, hand lettering",
    "astronaut tending a greenhouse on mars, cinematic, anamorphic lens flare",
)
_CALLBACK_EVENTS = orjson.dumps(list(DEFAULT_CALLBACK_EVENTS)).decode()
_EPOCH = datetime(1970, 1, 1)  # naive UTC: to_iso's output without its conversions
#: (milliseconds after the task was made, source, type, from, to, progress, the provider's
#: event); the last one's time is drawn per task.
_STEPS = (
    (40, "api", "submitted", "NOT_START", "SUBMITTED", 0, None),
    (9_000, "callback", "progress", "SUBMITTED", "IN_PROGRESS", 25, "progress"),
    (18_000, "callback", "progress", "IN_PROGRESS", "IN_PROGRESS", 50, "progress"),
    (27_000, "callback", "progress", "IN_PROGRESS", "IN_PROGRESS", 75, "progress"),
    (0, "callback", "succeeded", "IN_PROGRESS", "SUCCESS", 100, "completed"),
)
TASK_COLUMNS = (
    "id", "owner", "provider", "action", "status", "progress", "provider_task_id", "params",
    "result", "callback_events", "modal_entered", "version", "sequence", "created_at",
    "updated_at", "finished_at", "status_since",
)  # fmt: skip
EVENT_COLUMNS = (
    "id", "task_id", "source", "type", "outcome", "from_status", "to_status", "progress",
    "received_at", "detail", "dedupe_key", "dedupe_seq",
)  # fmt: skip


# ---- seeding ---------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    """service.domain.clock.to_iso of the moment `ms` (epoch milliseconds)."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


@dataclass(slots=True)
class Sample:
    """Some of the seeded tasks' ids and provider task ids, in random order."""

    ids: list[str]
    provider_ids: list[str]


Rows = list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Tasks start..stop-1 as rows, their events, and the sampled ones' ids."""

    tasks: Rows
    events: Rows
    sample: Sample


class Seeder:
    """Finished tasks for `OWNER`, made SPACING_MS apart and ending a minute ago once all
    `total` are written: task n is made at the same moment whichever call writes it, so a
    database can be filled in steps (1k, then the rest) and look as if filled at once.

    Python making the rows costs about what the database writing them does: so WRITERS
    processes each make chunks and write them, one making while the other writes."""

    def __init__(self, database_url: str, total: int, *, seed: int = 1) -> None:
        self.url = database_url
        self.postgres = not database_url.startswith("sqlite:///")
        self.total = total
        self.seed = seed
        self.base_ms = time.time_ns() // 1_000_000 - 60_000 - total * SPACING_MS

    def rows(self, start: int, stop: int, picks: frozenset[int]) -> Chunk:
        """Tasks start..stop-1 and their events; the ids of those in `picks` sampled."""
        tasks: Rows = []
        events: Rows = []
        sample = Sample([], [])
        rng = random.Random(self.seed * 1_000_003 + start)
        bits = rng.getrandbits
        pg = self.postgres
        for n in range(start, stop):
            made = self.base_ms + n * SPACING_MS
            done = made + 30_000 + bits(14)  # 30 to 46 s
            task_id = f"task_{_encode((made << 80) | bits(80), 26)}"
            job = str(uuid.UUID(int=bits(128), version=4))
            images = f"http://127.0.0.1:8000/_sim/images/{job}"
            result: dict[str, Any] = dict(empty_result())  # the model's keys, in its order
            result["images"] = [f"{images}-{k}.png" for k in range(1, 5)]
            result["grid_url"] = f"{images}-grid.png"
            result["cost"] = {"credits": 16}
            if "expires_at" in result:  # Apiframe keeps results a day after completing
                result["expires_at"] = _iso(done + 86_400_000)
            finished = _iso(done)
            tasks.append((
                task_id, OWNER, "simulator", "imagine", "SUCCESS", 100, job,
                orjson.dumps({"prompt": _PROMPTS[n % len(_PROMPTS)]}).decode(),
                orjson.dumps(result).decode(), _CALLBACK_EVENTS, False, 5, 5,
                _iso(made), finished, finished, done / 1000,
            ))  # fmt: skip
            for after, source, kind, before, status, progress, event in _STEPS:
                at = made + after if after else done
                key = f"submit:{job}" if source == "api" else f"cb:{bits(128):032x}"
                detail: dict[str, Any] = {"provider_task_id": job}
                if event:
                    detail["provider"] = {"event": event}
                row = (
                    f"evt_{_encode((at << 80) | bits(80), 26)}", task_id, source, kind,
                    "applied", before, status, progress, _iso(at), orjson.dumps(detail).decode(),
                    key,
                )  # fmt: skip
                events.append((*row, 0) if pg else row)  # PostgreSQL: dedupe_seq
            if n in picks:
                sample.ids.append(task_id)
                sample.provider_ids.append(job)
        return Chunk(tasks, events, sample)

    def seed_range(self, start: int, stop: int, *, sample: int) -> Sample:
        """Write tasks start..stop-1; `sample` of them (ids and provider task ids) back, in
        random order. One chunk is written here; more, by WRITERS processes in turn."""
        count = min(sample, stop - start)
        picks = frozenset(random.Random(start).sample(range(start, stop), count))
        size = PG_CHUNK if self.postgres else CHUNK
        ranges = [(n, min(n + size, stop)) for n in range(start, stop, size)]
        write = _write_postgres if self.postgres else _write_sqlite
        workers = min(WRITERS, len(ranges))
        if workers == 1:
            shares = [write(self, ranges, picks)]
        else:
            with ProcessPoolExecutor(workers, mp_context=FORK) as pool:
                jobs = [pool.submit(write, self, ranges[k::workers], picks) for k in range(workers)]
                shares = [job.result() for job in jobs]
        if self.postgres:
            _query(self.url, "vacuum_analyze")
        pairs = [
            pair for share in shares for pair in zip(share.ids, share.provider_ids, strict=True)
        ]
        random.Random(stop).shuffle(pairs)
        return Sample([i for i, _ in pairs], [p for _, p in pairs])


def _write_sqlite(seeder: Seeder, ranges: list[tuple[int, int]], picks: frozenset[int]) -> Sample:
    """Make each chunk of `ranges`, then write it in one transaction, once the database's one
    writer lock is ours (the other writer process makes its next chunk meanwhile)."""
    import sqlite3

    picked = Sample([], [])
    path = seeder.url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, timeout=SQLITE_WAIT, isolation_level=None)
    try:
        conn.execute(Q["sqlite_seed_synchronous"])
        conn.execute(Q["sqlite_seed_cache"])
        for start, stop in ranges:
            chunk = seeder.rows(start, stop, picks)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(Q["sqlite_seed_task"], chunk.tasks)
            conn.executemany(Q["sqlite_seed_event"], chunk.events)
            conn.execute("COMMIT")
            picked.ids += chunk.sample.ids
            picked.provider_ids += chunk.sample.provider_ids
    finally:
        conn.close()
    return picked


def _write_postgres(seeder: Seeder, ranges: list[tuple[int, int]], picks: frozenset[int]) -> Sample:
    """Make each chunk of `ranges` and COPY it, PG_TRANSACTION tasks (and their events) a
    transaction. Small transactions: a counter a trigger keeps per finished task
    (task_counts) is one row updated once per task, and each update of a row in one
    transaction is a new version of it that the next update must get past."""
    picked = Sample([], [])

    async def copy() -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(seeder.url)
        try:
            await conn.execute(Q["pg_seed_synchronous_commit"])
            steps, step = len(_STEPS), PG_TRANSACTION
            for start, stop in ranges:
                chunk = seeder.rows(start, stop, picks)
                for k in range(0, len(chunk.tasks), step):
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            "tasks", records=chunk.tasks[k : k + step], columns=TASK_COLUMNS
                        )
                        await conn.copy_records_to_table(
                            "events",
                            records=chunk.events[k * steps : (k + step) * steps],
                            columns=EVENT_COLUMNS,
                        )
                picked.ids.extend(chunk.sample.ids)
                picked.provider_ids.extend(chunk.sample.provider_ids)
        finally:
            await conn.close()

    asyncio.run(copy())
    return picked


def _query(url: str, name: str) -> list[tuple[Any, ...]]:
    """The rows of the named statement of bench_seed.sql for the store at `url`
    (`sqlite_NAME` or `pg_NAME`, else NAME), on a connection of its own."""
    sqlite = url.startswith("sqlite:///")
    own = ("sqlite_" if sqlite else "pg_") + name
    statement = Q[own] if own in Q else Q[name]
    if sqlite:
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return [tuple(r) for r in conn.execute(statement)]
        finally:
            conn.close()

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(statement)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _fresh(opts: Options, name: str) -> tuple[str, dict[str, str], str]:
    """The job's database (its own SQLite file, or the caller's PostgreSQL database), migrated
    and checked empty; the environment of its serve, and the API key."""
    work = opts.work / name
    work.mkdir(parents=True, exist_ok=True)
    if opts.store == "postgres":
        if opts.database_url is None:
            raise RuntimeError(f"bench {name}: store postgres needs a database URL")
        url = opts.database_url
    elif opts.store == "sqlite":
        url = f"sqlite:///{opts.work / name}.sqlite3"
        _forget(url)
    else:
        raise RuntimeError(f"bench {name}: no store {opts.store!r}")
    key = secrets.token_urlsafe(24)
    # With keys the simulator is off by default, and with no provider key nothing else is on.
    env = _env(work, url, JOBHOOK_API_KEYS=f"{OWNER}:{key}", JOBHOOK_SIMULATOR="on")
    _migrate(env)
    if _query(url, "seed_has_tasks")[0][0]:
        raise RuntimeError(f"bench {name}: the database already holds tasks; give a fresh one")
    return url, env, key


def _forget(url: str) -> None:
    """Remove a SQLite database the job made (3.7 GB at 1M tasks), once measured; PostgreSQL's
    is the caller's."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        for name in (path, f"{path}-wal", f"{path}-shm"):
            Path(name).unlink(missing_ok=True)


# ---- HTTP ------------------------------------------------------------------------------------


@contextmanager
def _serving(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`jobhook serve` on a free port, until the block ends."""
    port = _port()
    proc = _start(["service", "serve", "--port", str(port)], log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(url + "/healthz", proc)
        yield url, proc
    finally:
        _stop([proc])


#: GETs with the API key, thread t starting at the t-th share of the paths (one a line in
#: $listing) and cycling through all of them. Formatted in `init`, once wrk has set its Host
#: header (jobhook answers a request without one 421).
_LUA = string.Template("""\
local listing, auth, threads = [==[$listing]==], 'Bearer $key', $threads
local count, reqs, i = 0, {}, 0
setup = function(thread) thread:set('first', count); count = count + 1 end
init = function(args)
  for p in io.lines(listing) do
    reqs[#reqs + 1] = wrk.format('GET', p, {['Authorization'] = auth})
  end
  i = math.floor(first * #reqs / threads)
end
request = function() i = i % #reqs + 1; return reqs[i] end
""")


def _script(path: Path, paths: list[str], key: str, threads: int = THREADS) -> Path:
    """A wrk script at `path` (its paths beside it) of GETs of `paths`: see `_LUA`."""
    listing = path.with_suffix(".paths")
    listing.write_text("".join(p + "\n" for p in paths))
    path.write_text(_LUA.substitute(listing=listing, key=key, threads=threads))
    return path


def _answers(url: str, paths: list[str], key: str) -> None:
    """GETs of `paths` each answer 200, before wrk loads them (a wrong seed or key fails here,
    plainly; and the first requests, which prepare statements and fill caches, are not
    measured)."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for path in paths:
            r = client.get(path)
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:200]}")


def _rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS in /proc/PID/status), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _peak_rss(pid: int, during: Callable[[], Any]) -> tuple[Any, float]:
    """What `during()` returns, and the highest RSS (MiB) of `pid` seen while it ran."""
    peak, done = [_rss_mb(pid)], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            with suppress(OSError):
                peak.append(_rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        return during(), max(peak)
    finally:
        done.set()
        sampler.join()


def _bad(result: dict[str, float]) -> int:
    return int(result["non_2xx"])


def _errors_note(name: str, result: dict[str, float]) -> list[str]:
    errors = int(result.get("errors", 0.0))
    return [f"{name}: {errors} wrk socket errors (connect, read, write, timeout)"] if errors else []


# ---- the jobs --------------------------------------------------------------------------------


def run_lookup(opts: Options) -> list[Figure]:
    """GET /v1/tasks/{id}: req/s and p99 beside bare Starlette, and every answer a 2xx."""
    tasks = 2_000 if opts.quick else 100_000
    seconds = min(opts.seconds, 2) if opts.quick else opts.seconds
    url, env, key = _fresh(opts, "lookup")
    work = opts.work / "lookup"
    sample = Seeder(url, tasks).seed_range(0, tasks, sample=SCRIPT_IDS)
    script = _script(work / "lookup.lua", [f"/v1/tasks/{i}" for i in sample.ids], key)
    bare_port = _port()
    bare_proc = _bare(bare_port, work / "bare.log")
    try:
        bare = f"http://127.0.0.1:{bare_port}"
        _wait(bare + "/v1/callbacks/x/y", bare_proc)
        with _serving(env, work / "jobhook.log") as (jobhook, _):
            _answers(jobhook, [f"/v1/tasks/{i}" for i in sample.ids[:WARM_UP]], key)
            warm = [_wrk(url, script, 1, opts.connections, THREADS) for url in (bare, jobhook)]
            ref = _wrk(bare, script, seconds, opts.connections, THREADS)
            got = _wrk(jobhook, script, seconds, opts.connections, THREADS)
    finally:
        _stop([bare_proc])
    _forget(url)
    what = f"GET /v1/tasks/{{id}}, {tasks:,} tasks, {opts.store}"
    load = (
        f"wrk -t{THREADS} -c{opts.connections} -d{seconds}s after a 1 s warm-up, each server; "
        f"{len(sample.ids):,} distinct ids in random order, Authorization: Bearer (one owner)"
    )
    ratio = got["rps"] / ref["rps"] if ref["rps"] else 0.0
    bad = _bad(got) + _bad(ref) + sum(_bad(r) for r in warm)
    notes = _errors_note("jobhook", got) + _errors_note("bare Starlette", ref)
    if bad:
        notes.append(f"NOT all 2xx: {bad} non-2xx answers (warm-ups included)")
    return [
        Figure(job="lookup", what=what, value=got["rps"], unit="req/s", reference=ref["rps"],
               ref_name="bare Starlette", better="higher", goal=f">= {LOOKUP_RATIO}x",
               met=ratio >= LOOKUP_RATIO, notes=(load, SEEDED)),
        Figure(job="lookup", what=f"{what}, p99", value=got["p99_ms"], unit="ms",
               reference=ref["p99_ms"], ref_name="bare Starlette", better="lower"),
        Figure(job="lookup", what=f"{what}, non-2xx answers", value=float(bad),
               unit="answers", goal="= 0", met=bad == 0, notes=tuple(notes)),
    ]  # fmt: skip


@dataclass(slots=True)
class _Latencies:
    by_id: float
    by_provider_id: float
    first_page: float


def _p50s(url: str, key: str, sample: Sample, work: Path, seconds: int, tag: str,
          results: list[dict[str, float]]) -> _Latencies:  # fmt: skip
    """p50 (ms) of each lookup, one connection at a time (wrk -t1 -c1): what one request costs,
    not how many fit together. Every wrk result is appended to `results`."""
    ids = [f"/v1/tasks/{i}" for i in sample.ids]
    provider_ids = [f"/v1/tasks/{i}" for i in sample.provider_ids]
    p50 = []
    for name, paths in (("id", ids), ("provider", provider_ids), ("list", ["/v1/tasks"])):
        _answers(url, (paths * WARM_UP)[:WARM_UP], key)  # the list: one path, 50 times
        script = _script(work / f"{tag}-{name}.lua", paths, key, threads=1)
        result = _wrk(url, script, seconds, 1, 1)
        results.append(result)
        p50.append(result["p50_ms"])
    return _Latencies(*p50)


def _database_bytes(url: str) -> tuple[int, dict[str, int]]:
    """The database's size, and each of tasks' and events' (indexes included) where known.
    SQLite: the file and its -wal once checkpointed (truncated); PostgreSQL: pg_database_size
    (the catalog included: about 7 MB whatever the data)."""
    tables: dict[str, int] = {}
    if url.startswith("sqlite:///"):
        _query(url, "checkpoint")
        path = url.removeprefix("sqlite:///")
        size = sum(Path(p).stat().st_size for p in (path, f"{path}-wal") if Path(p).exists())
        with suppress(Exception):  # dbstat is a compile-time option
            tables = {name: int(n) for name, n in _query(url, "table_bytes")}
        return size, tables
    tables = {name: int(n) for name, n in _query(url, "table_bytes")}
    return int(_query(url, "database_bytes")[0][0]), tables


def run_scale(opts: Options) -> list[Figure]:
    """Lookups and the first list page at 1M tasks against the same at 1k; bytes per task;
    the serve process's RSS idle and under a lookup load."""
    small, total = 1_000, 20_000 if opts.quick else 1_000_000
    window = max(1, opts.seconds // 2)  # per p50 measure: six of them
    load_seconds = min(opts.seconds, 2) if opts.quick else opts.seconds
    url, env, key = _fresh(opts, "scale")
    work = opts.work / "scale"
    seeder = Seeder(url, total)
    results: list[dict[str, float]] = []

    few = seeder.seed_range(0, small, sample=small)
    with _serving(env, work / "jobhook-1k.log") as (jobhook, _):
        at_small = _p50s(jobhook, key, few, work, window, "1k", results)

    started = time.monotonic()
    rest = seeder.seed_range(small, total, sample=SCRIPT_IDS - 100)
    seeding = time.monotonic() - started
    size, tables = _database_bytes(url)
    # Lookups at 1M: ids drawn from all of them, 100 of the first 1k included.
    pairs = [
        *zip(rest.ids, rest.provider_ids, strict=True),
        *zip(few.ids[:100], few.provider_ids[:100], strict=True),
    ]
    random.Random(total).shuffle(pairs)
    mixed = Sample([i for i, _ in pairs], [p for _, p in pairs])
    with _serving(env, work / "jobhook-1m.log") as (jobhook, proc):
        time.sleep(1.0)  # past start-up (migrations checked, workers' first rounds)
        idle = _rss_mb(proc.pid)
        at_large = _p50s(jobhook, key, mixed, work, window, "1m", results)
        script = _script(work / "load.lua", [f"/v1/tasks/{i}" for i in mixed.ids], key)
        loaded, peak = _peak_rss(
            proc.pid, lambda: _wrk(jobhook, script, load_seconds, opts.connections, THREADS)
        )
        results.append(loaded)
    _forget(url)

    big = f"{total:,} tasks" if total % 1_000_000 else f"{total // 1_000_000}M tasks"
    store = opts.store
    how = (
        f"p50 of wrk -t1 -c1 -d{window}s per lookup, after {WARM_UP} unmeasured; at {big}: "
        f"{len(mixed.ids):,} ids drawn from all of them, at 1k: all 1,000",
        f"seeding {total - small:,} tasks took {seeding:.0f} s, "
        + ("then VACUUM ANALYZE" if store == "postgres" else "no ANALYZE (the store runs none)"),
    )
    figures = [
        Figure(job="scale", what=f"{what}, {big}, {store}, p50", value=value, unit="ms",
               reference=ref, ref_name=f"at {small // 1000}k tasks", better="lower",
               goal=f"<= {SCALE_RATIO:g}x", met=bool(ref) and value / ref <= SCALE_RATIO,
               notes=how if n == 0 else ())
        for n, (what, value, ref) in enumerate((
            ("GET /v1/tasks/{id}", at_large.by_id, at_small.by_id),
            ("GET /v1/tasks/{provider task id}", at_large.by_provider_id,
             at_small.by_provider_id),
            ("GET /v1/tasks (first page of 50)", at_large.first_page, at_small.first_page),
        ))
    ]  # fmt: skip
    per_task = size / total
    split = ", ".join(f"{name} {n / total:,.0f}" for name, n in sorted(tables.items()))
    where = "the file and its -wal, checkpointed" if store == "sqlite" else "pg_database_size"
    weighed = f"{size / 1_048_576:,.0f} MiB in all ({where})" + (
        f"; B/task with indexes: {split}" if split else ""
    )
    bad = sum(_bad(r) for r in results)
    errors = sum(int(r.get("errors", 0.0)) for r in results)
    checked = [f"{errors} wrk socket errors"] if errors else []
    if bad:
        checked.append(f"NOT all 2xx: {bad} non-2xx answers")
    return [
        *figures,
        Figure(job="scale", what=f"database bytes per task, {big}, {store}", value=per_task,
               unit="B/task", better="lower", goal="< 2 KB", met=per_task < BYTES_PER_TASK,
               notes=(weighed, SEEDED)),
        Figure(job="scale", what=f"serve RSS idle, {big}, {store}", value=idle, unit="MB",
               better="lower", goal=f"< {RSS_IDLE_MB:g} MB", met=idle < RSS_IDLE_MB,
               notes=("VmRSS of the serve process 1 s after it answered /healthz, before any "
                      "lookup (MB = MiB)",)),
        Figure(job="scale", what=f"serve RSS under lookup load, {big}, {store}", value=peak,
               unit="MB", better="lower", goal=f"< {RSS_LOAD_MB:g} MB", met=peak < RSS_LOAD_MB,
               notes=(f"the highest VmRSS sampled every 0.1 s during wrk -t{THREADS} "
                      f"-c{opts.connections} -d{load_seconds}s on GET /v1/tasks/{{id}} "
                      f"({loaded['rps']:,.0f} req/s)",)),
        Figure(job="scale", what=f"non-2xx answers, every scale request, {store}",
               value=float(bad), unit="answers", goal="= 0", met=bad == 0,
               notes=tuple(checked)),
    ]  # fmt: skip
