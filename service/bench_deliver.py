"""`jobhook bench` deliver job: the webhook outbox drained to a loopback receiver, beside a raw
httpx loop posting the same bodies through the same client with as many in flight.

The receiver is a separate process (uvicorn, a bare ASGI app that reads the body and answers
204), so its CPU is not the deliverer's. jobhook's side is the real thing: Services opened on
the store (SQLite in `opts.work`, or the fresh PostgreSQL database `opts.database_url`), N
tasks with a callback_url taken to SUCCESS through ingest (one `task.succeeded` outbox row
each, due at once), then a `Deliverer.run()` loop, started only after the rows exist and timed
until every row is recorded delivered (the moment the deliverer counts the N-th in
jobhook_deliveries_total, seen through that counter, not polled). The reference posts the
same N bodies, with Standard Webhooks headers signed beforehand, through the same `svc.http`
with at most `DelivererConfig.per_endpoint` requests in flight (the most the deliverer sends
to one URL); it runs before and after the deliverer and the mean of the two runs is the
reference.

Also measured: one claim with nothing to lease (4 already in flight: what the deliverer
asks after most attempts) at N pending rows, beside the raw loop's time per request, which
bounds how long the claims of one delivery may take; and one new row at a time with the
deliverer idle, from ingest's commit to the attempt recorded delivered (the wake-up path),
beside one raw POST's round trip. On PostgreSQL the rows' statistics are gathered (ANALYZE)
before anything is timed, as autovacuum would have them; the claim's time before that is a
note.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

import httpx
import orjson

from service.bench import _port, _start, _stop, _wait
from service.bench_report import Figure, Options
from service.config import Settings
from service.domain.ids import new_id
from service.domain.models import DEFAULT_CALLBACK_EVENTS, Observation, Result
from service.domain.status import Status
from service.metrics import Counter
from service.security.signing import webhook_headers
from service.services import Services, open_services
from service.store.base import NewTask
from service.store.common import new_secret
from service.workers.deliverer import DEFAULT_DELIVERER_CONFIG, Deliverer

JOB = "deliver"
#: Outbox rows drained (quick: tests).
ROWS, QUICK_ROWS = 2000, 200
#: Single rows timed from commit to delivered, one at a time.
SINGLES, QUICK_SINGLES = 100, 10
#: The bench's one client: not dev mode, so only the explicit allow below opens loopback.
OWNER, API_KEY = "bench", "bench-api-key"
#: Rows are made this many tasks at a time (ingest on either store takes concurrent writers).
MAKERS = 32
#: Drained at no more than ~50 rows/s, the run has failed: stop waiting.
DRAIN_DEADLINE = 30.0
DRAIN_PER_ROW = 0.02
GOAL = 0.8


# -- the receiver (its own process) -------------------------------------------------------------

_hits = 0


async def receiver_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A client backend as fast as it gets: every POST read to its end and answered 204;
    `GET /count` answers how many POSTs came."""
    global _hits
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        body = str(_hits).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    _hits += 1
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


# -- the measurement ----------------------------------------------------------------------------


class _Tally(Counter):
    """jobhook_deliveries_total as the deliverer counts it, which also notes the moment the
    `delivered` count reaches `target` (set it, then wait on `reached`): no polling."""

    def __init__(self, inner: Counter) -> None:
        super().__init__(inner.name, inner.help, inner.labels)
        self.values = inner.values
        self.target = float("inf")
        self.reached = asyncio.Event()
        self.reached_at = 0.0

    @property
    def delivered(self) -> int:
        return int(self.values[("delivered",)])

    @property
    def failed(self) -> int:
        return int(self.values[("retrying",)] + self.values[("dead",)])

    def expect(self, target: int) -> None:
        self.target = target
        self.reached.clear()
        if self.delivered >= target:
            self.reached_at = time.perf_counter()
            self.reached.set()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        super().inc(*values, amount=amount)
        if values == ("delivered",) and self.delivered >= self.target:
            self.reached_at = time.perf_counter()
            self.reached.set()


@dataclass(frozen=True, slots=True)
class _Row:
    """One outbox row as made: its webhook-id and the body the deliverer will send."""

    id: str
    payload: bytes


def _result(task_id: str) -> Result:
    base = f"https://cdn.example.com/images/{task_id}"
    return {
        "images": [f"{base}-{n}.png" for n in range(1, 5)],
        "grid_url": f"{base}-grid.png",
        "videos": [],
        "actions": [{"label": f"U{n}", "custom_id": f"MJ::JOB::upsample::{n}"} for n in (1, 2)],
        "cost": None,
    }


async def _submitted(svc: Services, url: str) -> str:
    """A task with `url` as its callback_url, made and submitted as POST /v1/tasks does."""
    task, _ = await svc.store.create_task(
        NewTask(
            id=new_id("task"),
            owner=OWNER,
            provider="simulator",
            action="imagine",
            params={"prompt": "a lighthouse at dusk, volumetric light --ar 3:2"},
            callback_url=url,
            callback_events=DEFAULT_CALLBACK_EVENTS,
        )
    )
    task_id: str = task["id"]
    await svc.ingest(
        task_id, Observation(status=Status.SUBMITTED, source="api", provider_task_id=new_id("p"))
    )
    return task_id


async def _succeed(svc: Services, task_id: str) -> _Row:
    """The provider's SUCCESS, ingested: one `task.succeeded` outbox row, due now."""
    applied = await svc.ingest(
        task_id,
        Observation(
            status=Status.SUCCESS, source="callback", progress=100, result=_result(task_id)
        ),
    )
    [row_id] = applied.deliveries
    task = applied.task
    # The body announce() wrote (domain/plan.py), rebuilt from the same task view.
    body = {"type": "task.succeeded", "timestamp": task["updated_at"], "data": task}
    return _Row(row_id, orjson.dumps(body))


async def _make_rows(svc: Services, url: str, n: int) -> list[_Row]:
    gate = asyncio.Semaphore(MAKERS)

    async def one() -> _Row:
        async with gate:
            return await _succeed(svc, await _submitted(svc, url))

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _requests(svc: Services, rows: Sequence[_Row]) -> list[tuple[bytes, dict[str, str]]]:
    """The raw loop's requests: each row's body with the headers an attempt carries, signed
    now (the signing is not the reference's cost)."""
    secret = (svc.settings.webhook_secret or "",)
    now = int(time.time())
    return [
        (r.payload, webhook_headers(secret, r.id, now, r.payload) | {"accept-encoding": "identity"})
        for r in rows
    ]


async def _raw(
    http: httpx.AsyncClient,
    url: str,
    requests: Sequence[tuple[bytes, dict[str, str]]],
    inflight: int,
) -> tuple[float, int]:
    """POST every request, at most `inflight` at once, a task each (as the deliverer does);
    (requests/s, how many failed)."""
    gate = asyncio.Semaphore(inflight)
    failed = 0
    tasks: set[asyncio.Task[None]] = set()

    async def post(body: bytes, headers: dict[str, str]) -> None:
        nonlocal failed
        try:
            r = await http.post(url, content=body, headers=headers)
            if not 200 <= r.status_code < 300:
                failed += 1
        except httpx.HTTPError:
            failed += 1
        finally:
            gate.release()

    started = time.perf_counter()
    for body, headers in requests:
        await gate.acquire()
        task = asyncio.create_task(post(body, headers))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks))
    elapsed = time.perf_counter() - started
    return len(requests) / elapsed, failed


async def _hits_now(http: httpx.AsyncClient, count_url: str) -> int:
    return int((await http.get(count_url)).text)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _claim_ms(svc: Services, url: str, inflight: int, times: int = 3) -> float:
    """The median time of a claim with nothing to lease (`inflight` already under way to
    `url`, the most allowed): what the deliverer asks when an attempt ends while others run."""
    took = []
    for _ in range(times):
        started = time.perf_counter()
        await svc.store.claim_due_deliveries(
            time.time(), limit=32, lease=30.0, per_url=inflight, inflight={url: inflight}
        )
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


async def _analyze(database_url: str) -> None:
    """Gather the planner's statistics, as autovacuum does in time (PostgreSQL)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Outcome:
    store: str
    rows: int
    delivered: int
    drain_seconds: float
    failed: int
    raw_rps: tuple[float, float]
    raw_failed: int
    receiver_hits: int  # during the drain
    pending_after: int
    claim_ms: float
    #: PostgreSQL: the claim before ANALYZE (statistics never gathered)
    claim_unanalyzed_ms: float | None
    singles_ms: list[float]
    raw_ms: list[float]


async def _measure(opts: Options, url: str, count_url: str) -> _Outcome:
    postgres = opts.store == "postgres"
    database_url = f"sqlite:///{opts.work}/deliver.sqlite3"
    if postgres:
        if not opts.database_url:
            raise ValueError("the deliver job on PostgreSQL needs opts.database_url")
        database_url = opts.database_url
    settings = Settings(
        database_url=database_url,
        api_keys={API_KEY: OWNER},
        secret_keys=(secrets.token_urlsafe(32),),
        webhook_secret=new_secret(),
        # The receiver is on loopback, which the outbound guard refuses unless allowed.
        outbound_allow=(ip_network("127.0.0.1/32"),),
        var_dir=opts.work / "var",
    )
    n = QUICK_ROWS if opts.quick else ROWS
    singles = QUICK_SINGLES if opts.quick else SINGLES
    config = DEFAULT_DELIVERER_CONFIG
    inflight = config.per_endpoint
    async with open_services(settings, public_url="http://127.0.0.1:8000") as svc:
        tally = _Tally(svc.metrics.deliveries)
        svc.metrics.deliveries = tally
        rows = await _make_rows(svc, url, n)
        waiting = [await _submitted(svc, url) for _ in range(singles)]
        stats = await svc.store.stats(time.time())
        if stats.deliveries.get("pending", 0) != n:
            raise RuntimeError(
                f"expected {n} pending outbox rows, the store has {stats.deliveries}"
            )
        unanalyzed = None
        if postgres:
            unanalyzed = await _claim_ms(svc, url, inflight)
            await _analyze(database_url)
        claim_ms = await _claim_ms(svc, url, inflight)
        requests = _requests(svc, rows)

        # Warm the pool both sides share (connections, the receiver's code), then raw, the
        # deliverer, raw again.
        await _raw(svc.http, url, requests[: 4 * inflight], inflight)
        raw_before, failed_before = await _raw(svc.http, url, requests, inflight)

        hits = await _hits_now(svc.http, count_url)
        deliverer = Deliverer(svc, svc.guard, config)
        svc.hub.delivery_listeners.append(deliverer.wake)
        tally.expect(n)
        started = time.perf_counter()
        running = asyncio.create_task(deliverer.run(), name="bench-deliverer")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    tally.reached.wait(), timeout=DRAIN_DEADLINE + DRAIN_PER_ROW * n
                )
            drained = tally.reached.is_set()
            drain_seconds = (tally.reached_at if drained else time.perf_counter()) - started
            delivered, failed = tally.delivered, tally.failed
            receiver_hits = await _hits_now(svc.http, count_url) - hits

            # One row at a time, the deliverer idle: commit to recorded delivered.
            singles_ms = []
            for task_id in waiting if drained else []:
                await asyncio.sleep(0.01)
                tally.expect(tally.delivered + 1)
                await _succeed(svc, task_id)
                committed = time.perf_counter()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tally.reached.wait(), timeout=10)
                if tally.reached.is_set():
                    singles_ms.append((tally.reached_at - committed) * 1000)
        finally:
            await deliverer.stop()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            svc.hub.delivery_listeners.remove(deliverer.wake)

        raw_after, failed_after = await _raw(svc.http, url, requests, inflight)
        raw_ms = []
        for body, headers in requests[:singles]:
            await asyncio.sleep(0.01)
            sent = time.perf_counter()
            await svc.http.post(url, content=body, headers=headers)
            raw_ms.append((time.perf_counter() - sent) * 1000)
        after = await svc.store.stats(time.time())
    return _Outcome(
        store="PostgreSQL" if postgres else "SQLite",
        rows=n,
        delivered=delivered,
        drain_seconds=drain_seconds,
        failed=failed,
        raw_rps=(raw_before, raw_after),
        raw_failed=failed_before + failed_after,
        receiver_hits=receiver_hits,
        pending_after=after.deliveries.get("pending", 0),
        claim_ms=claim_ms,
        claim_unanalyzed_ms=unanalyzed,
        singles_ms=singles_ms,
        raw_ms=raw_ms,
    )


def _figures(o: _Outcome, inflight: int) -> list[Figure]:
    rate = o.delivered / o.drain_seconds if o.drain_seconds > 0 else 0.0
    raw = statistics.fmean(o.raw_rps)
    ratio = rate / raw if raw else 0.0
    complete = o.delivered == o.rows and o.pending_after == 0
    notes = [
        f"{o.delivered} of {o.rows} delivered in {o.drain_seconds:.2f} s, {o.pending_after} "
        f"left pending; the receiver saw {o.receiver_hits} POSTs; raw runs before/after: "
        f"{o.raw_rps[0]:,.0f} / {o.raw_rps[1]:,.0f} req/s ({o.raw_failed} failed)"
    ]
    if o.store == "PostgreSQL":
        notes.append("timed after ANALYZE (the rows' statistics, as autovacuum gathers them)")
    figures = [
        Figure(
            job=JOB,
            what=f"outbox drain, {o.rows} rows, 1 URL, {inflight} in flight, {o.store}",
            value=rate,
            unit="deliveries/s",
            reference=raw,
            ref_name="raw httpx",
            goal=f">= {GOAL}x",
            met=complete and o.failed == 0 and ratio >= GOAL,
            notes=tuple(notes),
        ),
        Figure(
            job=JOB,
            what=f"failed delivery attempts, {o.store}",
            value=float(o.failed),
            unit="attempts",
            better="lower",
            goal="= 0",
            met=o.failed == 0,
        ),
        Figure(
            job=JOB,
            what=f"claim with {inflight} in flight (none leased), {o.rows} pending, {o.store}",
            value=o.claim_ms,
            unit="ms",
            reference=1000 / raw if raw else None,
            ref_name="raw httpx, per request",
            better="lower",
            notes=(
                (f"before ANALYZE (statistics never gathered): {o.claim_unanalyzed_ms:,.1f} ms",)
                if o.claim_unanalyzed_ms is not None
                else ()
            ),
        ),
    ]
    if o.singles_ms and o.raw_ms:
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            figures.append(
                Figure(
                    job=JOB,
                    what=f"one new row, commit -> delivered, {name}, {o.store}",
                    value=_pct(o.singles_ms, q),
                    unit="ms",
                    reference=_pct(o.raw_ms, q),
                    ref_name="raw httpx POST",
                    better="lower",
                    notes=(
                        (f"{len(o.singles_ms)} rows one at a time, the deliverer idle",)
                        if name == "p50"
                        else ()
                    ),
                )
            )
    return figures


def run_deliver(opts: Options) -> list[Figure]:
    """The deliver job's figures (see the module's docstring). `opts.seconds` and
    `opts.connections` do not apply: the job is N rows, and in flight is what the deliverer
    allows one receiving URL (`DelivererConfig.per_endpoint`)."""
    opts.work.mkdir(parents=True, exist_ok=True)
    port = _port()
    url = f"http://127.0.0.1:{port}/hooks"
    receiver = _start(
        ["uvicorn", "service.bench_deliver:receiver_app", "--host", "127.0.0.1",
         "--port", str(port), "--lifespan", "off", "--log-level", "warning",
         "--no-access-log", "--timeout-keep-alive", "300"],
        opts.work / "receiver.log",
    )  # fmt: skip
    try:
        _wait(url, receiver)
        outcome = asyncio.run(_measure(opts, url, f"http://127.0.0.1:{port}/count"))
    finally:
        _stop([receiver])
    return _figures(outcome, DEFAULT_DELIVERER_CONFIG.per_endpoint)
