"""`jobhook bench queue`: 1,000 imagines queued at once against a simulator that runs at most
`cap` jobs at a time, against the cap-bound ideal (jobs x one job's duration / cap).

One jobhook (API + workers, the simulator embedded, requests in-process, no sockets) with
JOBHOOK_SIMULATOR_CONCURRENCY=cap; the simulator refuses a job past its own cap of the same size
(429), so any slack in jobhook's accounting would show as 429s. One job's duration is measured
alone first (submit to SUCCESS); then the burst is timed from the first POST to the last
SUCCESS. The ratio to the ideal is the queue's overhead: the wait between a job ending and the
next one being sent (a callback's ingest, the submitter's wake-up, one provider round trip).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from service.bench_report import Figure, Options
from service.config import Settings

#: Jobs in flight at once at the simulator, and the simulator's seconds per step.
CAP = 10
STEP = 0.05
IMAGINE = {"action": "imagine", "params": {"prompt": "a queued fox"}}


def run_queue(opts: Options) -> list[Figure]:
    return asyncio.run(_run(opts))


async def _run(opts: Options) -> list[Figure]:
    from service.app import create_app

    jobs = 60 if opts.quick else 1000
    store = "PostgreSQL" if opts.store == "postgres" else "SQLite"
    settings = Settings(
        database_url=opts.database_url or f"sqlite:///{opts.work}/queue.sqlite3",
        var_dir=opts.work,
        simulator_step=STEP,
        provider_concurrency={"simulator": CAP},
        queue_per_owner=max(jobs, 1000),
        submit_timeout=3600.0,
        log_level="warning",
        log_format="json",
    )
    base = "http://jobhook.bench"
    app = create_app(settings, public_url=base, in_process=True, simulator_seed=3)
    async with app.router.lifespan_context(app):
        sim = app.state.simulator
        sim.faults.configure({"concurrency": {"apiframe": CAP}})
        svc = app.state.services
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base, timeout=60) as client:
            started = time.perf_counter()
            await _submit(client, 1)
            await _until_done(svc, 1)
            duration = time.perf_counter() - started
            started = time.perf_counter()
            await _submit(client, jobs)
            await _until_done(svc, jobs + 1, timeout=max(600.0, 20 * jobs * duration / CAP))
            took = time.perf_counter() - started
        refused = sim.faults.injected["concurrency"]
        peak = sim.faults.peak_running["apiframe"]
    ideal = jobs * duration / CAP
    ratio = took / ideal
    what = f"{jobs} queued imagines at a cap of {CAP}, {store}"
    notes = [f"one job alone {duration:.2f} s; peak {peak} in flight at the simulator"]
    if refused:
        notes.append(f"the simulator refused {refused} submissions past its cap")
    return [
        Figure(job="queue", what=what, value=took, unit="s", reference=ideal,
               ref_name=f"ideal: jobs x {duration:.2f} s / {CAP}", better="lower",
               goal="<= 1.5x", met=ratio <= 1.5 and peak <= CAP, notes=tuple(notes)),
        Figure(job="queue", what=f"ratio to the cap-bound ideal, {store}", value=ratio,
               unit="x", better="lower"),
    ]  # fmt: skip


async def _submit(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    answers = []
    for _ in range(n):
        r = await client.post("/v1/tasks", json=IMAGINE)
        if r.status_code != 202:
            raise RuntimeError(f"POST /v1/tasks answered {r.status_code}: {r.text[:200]}")
        answers.append(r.json())
    return answers


async def _until_done(svc: Any, total: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = await svc.store.stats(time.time())
        ended = {s: n for (_, s), n in stats.tasks.items() if s in ("SUCCESS", "FAILURE", "CANCEL")}
        if sum(ended.values()) >= total:
            if set(ended) != {"SUCCESS"}:
                raise RuntimeError(f"not every task succeeded: {ended}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {timeout:.0f} s: {dict(stats.tasks)}")
        await asyncio.sleep(0.02)
