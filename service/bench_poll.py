"""`jobhook bench` job "poll": N live APIMart tasks, polled by jobhook at its own pace.

Black-box, real processes on loopback: the provider simulator runs as its own process (its CPU
is not jobhook's) and jobhook's provider `apimart` points at it (APIMART_API_KEY,
JOBHOOK_APIMART_BASE_URL; `simulator-apimart` would poll the simulator embedded in jobhook's
web process, which is off here). SQLite: one `jobhook serve` (web + embedded workers); with
`opts.store == "postgres"`: `jobhook serve --no-workers` plus `workers` x `jobhook worker`.

The tasks stay live and change on every poll. The stock simulator cannot do that for long: an
APIMart job moves SUBMITTED 10%, IN_PROGRESS 40/70/99% (one step apiece), then finishes, or
with `[never]` in its prompt stays at 99% for good; `[delay=S]` delays callbacks, which APIMart
never sends. Four changes at most, then every poll sees the same 99% and jobhook backs off (6,
9, 13.5 ... 60 s, as it should): the pace under test would be gone within ~16 s of each
submission. So, by default, the simulator process runs the same app (routes, auth, wire
format, fault gate) with one change to its APIMart job script: SUBMITTED 1%, then IN_PROGRESS
+1% per step up to 99%, kept there (like `[never]`). At a step of SIM_STEP (2.5 s) every poll,
at least 3.2 s (the pace's low end) after the last, sees new progress, for 99 steps (~245 s
from each submission: submit + warm-up + window must fit, which a note checks).
`stock_simulator=True` runs the plain `jobhook simulator` instead (`[never]`, step 3 s).

Figures come from jobhook's own `poll.result` log lines (JOBHOOK_LOG_FILE, JSON) inside the
measured window, and CPU from /proc/PID/stat of jobhook's processes over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from service.bench import _env, _port, _start, _stop, _wait
from service.bench_report import Figure, Options
from service.domain import schedule
from service.providers.apimart import ApimartProvider

#: APIMart's intended pace: a poll every `PACE` s (after a change), jittered by +-JITTER.
PACE = ApimartProvider.poll_interval
PACE_MAX = PACE * (1 + schedule.JITTER)
#: The p99 goal's slack over the pace's longest gap.
SLACK = 1.0
#: Seconds per step of the bench's simulator: below the pace's shortest gap (3.2 s, with room
#: for the simulator's own lag), so each poll sees new progress; 99 steps (~245 s) outlast
#: submit + warm-up + window (60 s) unless submitting takes minutes.
SIM_STEP = 2.5
#: The stock simulator's step (`stock_simulator=True`): just under the pace's shortest gap,
#: the most of its four changes that polls at the pace can see.
STOCK_STEP = 3.0
#: What jobhook is told (the settings exist once rate limits and concurrency are configurable;
#: before that they are ignored): polls/s per provider well over N / PACE, polls in flight.
RATE = 2000
CONCURRENCY = 64
#: Tasks submitted at once while setting up.
SUBMIT_CONCURRENCY = 32
#: Tasks in quick mode (tests), unless fewer are asked for.
QUICK_TASKS = 200
#: Seconds between the last submission and the window: every task has had its first poll
#: (due PACE s after its submission) and the burst of first polls has spread.
WARMUP, QUICK_WARMUP = 10.0, 5.0
#: The window: opts.seconds * 6 (60 s by default) within these bounds; quick mode 8 s.
WINDOW_MIN, WINDOW_MAX, QUICK_WINDOW = 30.0, 120.0, 8.0
PROMPT = "bench poll [never]"
PROVIDER = "apimart"
API_KEY = "sk-bench-poll-key"


def run_poll(
    opts: Options, *, tasks: int = 2000, workers: int = 1, stock_simulator: bool = False
) -> list[Figure]:
    """Submit `tasks` live tasks, warm up, then measure a window of jobhook polling them."""
    tasks = min(tasks, QUICK_TASKS) if opts.quick else tasks
    warmup = QUICK_WARMUP if opts.quick else WARMUP
    window = QUICK_WINDOW if opts.quick else min(max(opts.seconds * 6.0, WINDOW_MIN), WINDOW_MAX)
    postgres = opts.store == "postgres"
    if postgres and not opts.database_url:
        raise ValueError("the poll job on PostgreSQL needs opts.database_url")
    opts.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="poll-", dir=opts.work))  # fresh logs for each run
    database_url = opts.database_url if postgres else f"sqlite:///{work}/bench.sqlite3"
    assert database_url is not None

    procs: list[subprocess.Popen[bytes]] = []
    try:
        sim_port, web_port = _port(), _port()
        sim_url, web_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{web_port}"
        if stock_simulator:
            argv = ["service", "simulator", "--step", f"{STOCK_STEP:g}"]
        else:
            argv = ["service.bench_poll", "simulator", "--step", f"{SIM_STEP:g}"]
        sim = _start([*argv, "--port", str(sim_port)], work / "simulator.log", _clean_env())
        procs.append(sim)
        _wait(sim_url + "/_faults", sim)

        env = _jobhook_env(work, database_url, sim_url=sim_url, web_url=web_url)
        if postgres:
            from service.bench_cluster import _migrate

            _migrate(env | {"JOBHOOK_LOG_FILE": str(work / "migrate.jsonl")})
        serve = ["service", "serve", "--port", str(web_port)]
        web = _start(
            [*serve, "--no-workers"] if postgres else serve,
            work / "web.log",
            env | {"JOBHOOK_LOG_FILE": str(work / "web.jsonl")},
        )
        procs.append(web)
        _wait(web_url + "/healthz", web)
        jobhook = [web]
        for n in range(workers if postgres else 0):
            worker_env = env | {"JOBHOOK_LOG_FILE": str(work / f"worker{n}.jsonl")}
            jobhook.append(_start(["service", "worker"], work / f"worker{n}.log", worker_env))
            procs.append(jobhook[-1])

        started = time.monotonic()
        ids = asyncio.run(_submit(web_url, tasks))
        submit_seconds = time.monotonic() - started
        time.sleep(warmup)
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"a benchmark process exited early; see {work}/*.log")
        cpu0, sim0, t0 = _cpu(jobhook), _cpu([sim]), time.time()
        time.sleep(window)
        cpu1, sim1, t1 = _cpu(jobhook), _cpu([sim]), time.time()
    finally:
        _halt(procs)

    lines = _lines(sorted(work.glob("*.jsonl")))
    where = (
        f"PostgreSQL, serve --no-workers + {workers} x worker" if postgres else "SQLite, 1 serve"
    )
    return _figures(
        lines,
        ids,
        t0=t0,
        t1=t1,
        cpu=cpu1 - cpu0,
        sim_cpu=sim1 - sim0,
        setup=(
            f"{where}; {tasks} tasks submitted in {submit_seconds:.1f} s "
            f"({SUBMIT_CONCURRENCY} at once), warm-up {warmup:g} s, window {window:g} s"
            + (
                f"; the first tasks reached 99% ({99 * SIM_STEP:g} s) before the window ended"
                if not stock_simulator and submit_seconds + warmup + window > 99 * SIM_STEP
                else ""
            )
        ),
        stock=stock_simulator,
    )


def _halt(procs: list[subprocess.Popen[bytes]]) -> None:
    """`_stop` (SIGTERM, graceful: the logs are flushed); whatever still runs after it, killed."""
    try:
        _stop(procs)
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _clean_env() -> dict[str, str]:
    """Ours without JOBHOOK_* and without any real provider's key or URL."""
    prefixes = ("JOBHOOK_", "APIMART_", "APIFRAME_", "VTRIX_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _jobhook_env(work: Path, database_url: str, *, sim_url: str, web_url: str) -> dict[str, str]:
    env = _env(work, database_url)
    env = {k: v for k, v in env.items() if not k.startswith(("APIMART_", "APIFRAME_", "VTRIX_"))}
    return env | {
        "PYTHONUNBUFFERED": "1",
        # The embedded simulator is off: the standalone one is the provider, `apimart`.
        "JOBHOOK_SIMULATOR": "off",
        "APIMART_API_KEY": API_KEY,
        "JOBHOOK_APIMART_BASE_URL": sim_url,
        "JOBHOOK_PUBLIC_URL": web_url,
        "JOBHOOK_PROVIDER_RATES": f"{PROVIDER}={RATE}",
        "JOBHOOK_POLL_CONCURRENCY": str(CONCURRENCY),
    }


async def _submit(url: str, tasks: int) -> list[str]:
    """POST /v1/tasks `tasks` times, SUBMIT_CONCURRENCY at once; the new tasks' ids."""
    gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    body = {"provider": PROVIDER, "action": "imagine", "params": {"prompt": PROMPT}}
    limits = httpx.Limits(max_connections=SUBMIT_CONCURRENCY)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, trust_env=False, limits=limits
    ) as client:

        async def one() -> str:
            async with gate:
                r = await client.post("/v1/tasks", json=body)
            if r.status_code != 202:
                raise RuntimeError(f"POST /v1/tasks answered {r.status_code}: {r.text[:200]}")
            task_id: str = r.json()["id"]
            return task_id

        return list(await asyncio.gather(*(one() for _ in range(tasks))))


def _cpu(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system, all threads) the processes have used so far."""
    ticks = 0
    for proc in procs:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _lines(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Every `poll.result` and `poll.behind` line of the JSON log files."""
    out = []
    for file in files:
        for raw in file.read_bytes().splitlines():
            if b'"poll.' in raw:
                with_ts = orjson.loads(raw)
                if with_ts.get("event") in ("poll.result", "poll.behind"):
                    with_ts["at"] = datetime.fromisoformat(with_ts["timestamp"]).timestamp()
                    out.append(with_ts)
    return out


def _percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (nan for none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _figures(
    lines: list[dict[str, Any]],
    ids: Sequence[str],
    *,
    t0: float,
    t1: float,
    cpu: float,
    sim_cpu: float,
    setup: str,
    stock: bool,
) -> list[Figure]:
    """The figures of a run: its log lines, the submitted task ids, the window [t0, t1), and
    the CPU seconds jobhook's processes (and the simulator) used in it."""
    n, seconds = len(ids), t1 - t0
    polls = sorted((x for x in lines if x["event"] == "poll.result"), key=lambda x: x["at"])
    by_task: dict[str, list[float]] = defaultdict(list)
    for line in polls:
        by_task[line["task_id"]].append(line["at"])
    in_window = [x for x in polls if t0 <= x["at"] < t1]
    # A gap ends in the window (it may begin before it): a long wait across t0 counts.
    gaps = [
        b - a for stamps in by_task.values() for a, b in itertools.pairwise(stamps) if t0 <= b < t1
    ]
    polled = {x["task_id"] for x in in_window}
    starved = sum(1 for task_id in ids if task_id not in polled)
    results = Counter(x["result"] for x in in_window)
    statuses = Counter(x.get("status") for x in in_window)
    changed = results["changed"] / len(in_window) if in_window else 0.0
    behind = [x for x in lines if x["event"] == "poll.behind" and x["at"] < t1]
    rate, needed = len(in_window) / seconds, n / PACE
    cpu_ms = cpu * 1000 / len(in_window) if in_window else math.nan
    kinds = ", ".join(f"{k} {v}" for k, v in results.most_common())
    sees = (
        "stock simulator, [never], step 3 s: a task changes 4 times (SUBMITTED 10%, IN_PROGRESS "
        "40/70/99%) then stays at 99%, so polls after the 4th see nothing new and back off"
        if stock
        else f"simulator job +1% per {SIM_STEP:g} s step, never finishing: every poll at the "
        "pace sees new progress (IN_PROGRESS n%)"
    )
    what = f"{n} live APIMart tasks"
    pace = f"pace {PACE_MAX:g} s + {SLACK:g} s"
    return [
        Figure(
            job="poll",
            what=f"polls/s, {what}",
            value=rate,
            unit="polls/s",
            reference=needed,
            ref_name=f"needed: {n} / {PACE:g} s",
            better="higher",
            goal=">= 0.95x",
            met=rate >= 0.95 * needed,
            notes=(
                setup,
                f"what a poll sees: {sees}; in the window {changed:.0%} of polls changed the "
                f"task ({kinds}; statuses {dict(statuses)})",
                f"jobhook told JOBHOOK_PROVIDER_RATES={PROVIDER}={RATE}, "
                f"JOBHOOK_POLL_CONCURRENCY={CONCURRENCY} (ignored where not yet supported)",
                f"poll.behind lines: {len(behind)}"
                + (f", the last: {behind[-1].get('limit')}" if behind else ""),
            ),
        ),
        Figure(
            job="poll",
            what="gap between polls of a task, p50",
            value=_percentile(gaps, 50),
            unit="s",
            reference=PACE,
            ref_name=f"pace {PACE:g} s +-{schedule.JITTER:.0%}",
            better="lower",
        ),
        Figure(
            job="poll",
            what="gap between polls of a task, p99",
            value=_percentile(gaps, 99),
            unit="s",
            reference=PACE_MAX + SLACK,
            ref_name=pace,
            better="lower",
            goal=f"<= {PACE_MAX + SLACK:g} s",
            met=bool(gaps) and _percentile(gaps, 99) <= PACE_MAX + SLACK,
            notes=(f"{len(gaps)} gaps ending in the window",),
        ),
        Figure(
            job="poll",
            what="gap between polls of a task, max",
            value=max(gaps, default=math.nan),
            unit="s",
            reference=PACE_MAX + SLACK,
            ref_name=pace,
            better="lower",
        ),
        Figure(
            job="poll",
            what="live tasks not polled in the window",
            value=float(starved),
            unit="tasks",
            better="lower",
            goal="0",
            met=starved == 0,
        ),
        Figure(
            job="poll",
            what="CPU per poll",
            value=cpu_ms,
            unit="ms",
            better="lower",
            notes=(
                f"jobhook's processes used {cpu / seconds:.0%} of a core over the window "
                "(the web process answers nothing else meanwhile); the simulator "
                f"{sim_cpu / seconds:.0%} (not counted)",
            ),
        ),
    ]


def _simulator(port: int, step: float) -> None:
    """The bench's simulator process: the standalone simulator app, its APIMart jobs creeping
    +1% a step instead of four steps to the end (see the module's docstring)."""
    from service.cli import _listen, _run_server
    from service.simulator import create_standalone_app

    app = create_standalone_app(step_seconds=step)
    apimart = app.state.simulator.apimart

    async def creep(job_id: str, *, after_modal: bool = False) -> None:
        await apimart._sim.tick()
        apimart._set(job_id, status="SUBMITTED", progress=1)
        for progress in range(2, 100):
            await apimart._sim.tick()
            started = apimart.jobs[job_id].start_time or int(time.time() * 1000)
            apimart._set(job_id, status="IN_PROGRESS", progress=progress, start_time=started)

    vars(apimart)["_run"] = creep  # this process's simulator only
    _run_server(app, _listen("127.0.0.1", port))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench_poll")
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulator", help="the bench's simulator (APIMart jobs +1%% a step)")
    sim.add_argument("--port", type=int, required=True)
    sim.add_argument("--step", type=float, default=SIM_STEP)
    args = parser.parse_args(argv)
    _simulator(args.port, args.step)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
