"""`jobhook bench --cluster` without wrk: its table (req/s summed over the wrk processes of a
setup, the worse latencies, ratios to bare Starlette, the all-2xx verdict), and its database
helper against the local PostgreSQL: made, usable by `jobhook migrate`, dropped even when the
run fails; an unreachable server is one line."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from service.bench import _env, _lua
from service.bench_cluster import (
    PREFIX,
    PostgresUnavailable,
    Row,
    _migrate,
    bench_database,
    combine,
    table,
    verdict,
)
from tests.support.postgres import ADMIN_URL, require_postgres


def _result(rps: float, p50: float, p99: float, non_2xx: float = 0.0) -> dict[str, float]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": non_2xx, "errors": 0.0}


def test_two_wrk_processes_make_one_row_summed_with_the_worse_latencies() -> None:
    row = combine("PostgreSQL, 2 web processes", [_result(600, 40, 90), _result(500, 50, 80, 3)])
    assert row.rps == 1100
    assert (row.p50_ms, row.p99_ms, row.non_2xx, row.errors) == (50, 90, 3, 0)


def test_table_gives_ratios_to_the_first_row_and_the_parts_of_a_split() -> None:
    rows = [
        combine("bare Starlette, 1 process", [_result(4000, 10, 20)]),
        combine("SQLite, 1 process (serve)", [_result(1000, 50, 90)]),
        combine("PostgreSQL, 2 web processes", [_result(350, 60, 200), _result(250, 70, 300)]),
    ]
    lines = table("HEADER", rows, ["a note"]).splitlines()
    assert lines[0] == "HEADER"
    assert lines[1].split() == ["setup", "req/s", "ratio", "p50", "ms", "p99", "ms", "non-2xx"]
    assert lines[2].split()[-5:] == ["4000", "1.00", "10.00", "20.00", "0"]
    assert lines[3].split()[-5:] == ["1000", "0.25", "50.00", "90.00", "0"]
    assert lines[4].split()[-5:] == ["600", "0.15", "70.00", "300.00", "0"]
    assert (
        lines[5] == "PostgreSQL, 2 web processes: 350 + 250 req/s; p50 and p99 the worse of the 2"
    )
    assert lines[6] == "a note"
    assert len({len(line) for line in lines[1:5]}) == 1  # the columns line up


def test_verdict_names_every_setup_with_a_non_2xx() -> None:
    good = Row("SQLite", (100.0,), 1.0, 2.0, 0, 0)
    assert verdict([good]) is None
    bad = Row("PostgreSQL", (100.0, 90.0), 1.0, 2.0, 7, 1)
    assert verdict([good, bad]) == "PostgreSQL: 7 non-2xx, 1 socket errors"


def test_the_wrk_script_formats_its_requests_once_wrk_has_set_host() -> None:
    """Formatted as the script loads, a request has no Host header (jobhook answers 421)."""
    script = _lua([(f"/v1/callbacks/simulator/t{n}", b"{}", "sig") for n in range(4)], 2)
    assert script.index("init = function") < script.index("wrk.format")
    assert script.count("if first == 0 then") == script.count("if first == 1 then") == 2


async def _databases() -> set[str]:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%"
        )
        return {row["datname"] for row in rows}
    finally:
        await conn.close()


def test_the_run_database_is_made_migrated_and_dropped_even_when_it_fails(tmp_path: Path) -> None:
    require_postgres()
    before = asyncio.run(_databases())
    made: list[str] = []

    def failing_run() -> None:
        with bench_database(ADMIN_URL) as (url, version):
            assert version[0].isdigit()
            made.extend(asyncio.run(_databases()) - before)
            assert url.split("?")[0].endswith("/" + made[0])
            _migrate(_env(tmp_path, url))  # jobhook takes the URL as it is
            raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError, match="the run failed"):
        failing_run()
    assert len(made) == 1
    assert made[0] not in asyncio.run(_databases())


def test_an_unreachable_server_is_one_line() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    database = bench_database(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    with pytest.raises(PostgresUnavailable) as caught:
        database.__enter__()
    message = str(caught.value)
    assert message.startswith(f"PostgreSQL is not reachable at 127.0.0.1:{port} (")
    assert "\n" not in message
