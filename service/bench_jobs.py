"""`jobhook bench JOB...`: every job the service does, measured beside its reference in the same
run, in one table (service/bench_report.py).

Jobs: `ingest` (signed callbacks vs bare Starlette), `lookup` (GET /v1/tasks/{id} over 100k
tasks vs a bare route), `scale` (1,000,000 tasks vs 1,000: lookups, the first list page, bytes
per task, RSS), `poll` (2,000 live APIMart tasks at the poller's pace), `deliver` (the outbox
drain vs a raw httpx loop), `queue` (1,000 queued imagines at a simulator's concurrency cap vs
jobs x duration / cap); `all` is every one. `--store postgres` (or `both`) runs them on a
fresh PostgreSQL database each, dropped afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from service.bench_report import Figure, Options, machine, table

JOBS = ("ingest", "lookup", "scale", "poll", "deliver", "queue")
#: jobs that need wrk on PATH
WRK_JOBS = frozenset({"ingest", "lookup", "scale"})


def run_ingest(opts: Options) -> list[Figure]:
    """Signed progress callbacks (5,000 distinct, 100 tasks) by wrk against one jobhook
    process and bare Starlette, with the same script."""
    from service.bench import _bare, _env, _lua, _port, _signed_callbacks, _start, _stop, _wait
    from service.bench import _wrk as wrk

    store = "PostgreSQL" if opts.store == "postgres" else "SQLite"
    database_url = opts.database_url or f"sqlite:///{opts.work}/ingest.sqlite3"
    env = _env(opts.work, database_url)
    tasks = 10 if opts.quick else 100
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bare_port, jh_port = _port(), _port()
        procs.append(_bare(bare_port, opts.work / "bare.log"))
        argv = ["service", "serve", "--port", str(jh_port)]
        procs.append(_start(argv, opts.work / "ingest.log", env))
        bare, jobhook = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{jh_port}"
        _wait(bare + "/v1/callbacks/x/y", procs[0])
        _wait(jobhook + "/healthz", procs[1])
        secret = (opts.work / "var" / "secret_key").read_text().strip()
        [requests] = _signed_callbacks([jobhook], secret, tasks, interleave=True)
        script = opts.work / "callbacks.lua"
        script.write_text(_lua(requests))
        base = wrk(bare, script, opts.seconds, opts.connections)
        got = wrk(jobhook, script, opts.seconds, opts.connections)
    finally:
        _stop(procs)
    bad = int(got["non_2xx"] + got["errors"])
    what = f"signed callbacks, {len(requests)} distinct, -c{opts.connections}, {store}"
    return [
        Figure(job="ingest", what=what, value=got["rps"], unit="req/s", reference=base["rps"],
               ref_name="bare Starlette", goal=">= 0.35x", met=got["rps"] >= 0.35 * base["rps"]
               and not bad, notes=(f"{bad} non-2xx or socket errors",) if bad else ()),
        Figure(job="ingest", what=f"p99 latency, {store}", value=got["p99_ms"], unit="ms",
               reference=base["p99_ms"], ref_name="bare Starlette", better="lower",
               goal="<= 25 ms", met=got["p99_ms"] <= 25),
        Figure(job="ingest", what=f"p50 latency, {store}", value=got["p50_ms"], unit="ms",
               reference=base["p50_ms"], ref_name="bare Starlette", better="lower"),
    ]  # fmt: skip


def _runner(job: str) -> Callable[[Options], list[Figure]]:
    if job == "ingest":
        return run_ingest
    if job == "lookup":
        from service.bench_lookup import run_lookup

        return run_lookup
    if job == "scale":
        from service.bench_lookup import run_scale

        return run_scale
    if job == "poll":
        from service.bench_poll import run_poll

        # On PostgreSQL the API and two `jobhook worker` processes share the polling.
        return lambda opts: run_poll(opts, workers=2 if opts.store == "postgres" else 1)
    if job == "queue":
        from service.bench_queue import run_queue

        return run_queue
    from service.bench_deliver import run_deliver

    return run_deliver


@contextmanager
def _database(store: str) -> Iterator[str | None]:
    if store != "postgres":
        yield None
        return
    from service.bench_cluster import bench_database

    with bench_database() as (url, _version):
        yield url


def run(
    jobs: Sequence[str],
    *,
    stores: Sequence[str] = ("sqlite",),
    seconds: int = 10,
    connections: int = 64,
    quick: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Run `jobs` on each of `stores`; print one table. 0 when every job ran (goals missed
    are in the table, not the exit code), 1 when a job failed, 2 when wrk is missing."""
    if WRK_JOBS & set(jobs) and shutil.which("wrk") is None:
        out("jobhook bench: needs wrk (apt-get install wrk; scripts/bench installs it)")
        return 2
    header = machine()
    figures: list[Figure] = []
    failed: list[str] = []
    work_root = Path(tempfile.mkdtemp(prefix="jobhook-bench-"))
    for store in stores:
        for job in jobs:
            work = work_root / f"{job}-{store}"
            work.mkdir()
            try:
                with _database(store) if store == "postgres" else nullcontext() as url:
                    opts = Options(work=work, seconds=seconds, connections=connections,
                                   store=store, database_url=url, quick=quick)  # fmt: skip
                    got = _runner(job)(opts)
                figures += got
                out(table(got, f"{job} on {store}: done"))
            except Exception as exc:  # one job failing still prints the others
                failed.append(f"{job} on {store}: {type(exc).__name__}: {exc}")
                (work / "error.txt").write_text(traceback.format_exc())
    out("")
    out(table(figures, f"jobhook bench {' '.join(jobs)} ({', '.join(stores)}): {header}"))
    for line in failed:
        out(f"FAILED {line} (details in {work_root})")
    if not failed:
        shutil.rmtree(work_root, ignore_errors=True)
    return 1 if failed else 0
