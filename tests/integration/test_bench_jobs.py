"""`jobhook bench JOB...`: the jobs run in one go and print one table, with the machine in the
header and each figure beside its reference; a job that fails is named, the others still print."""

from __future__ import annotations

import shutil

import pytest

from service import bench_jobs
from service.bench_report import Figure, table


def test_the_table_puts_each_figure_beside_its_reference_and_goal() -> None:
    text = table(
        [
            Figure(
                job="lookup",
                what="GET /v1/tasks/{id}",
                value=3000,
                unit="req/s",
                reference=6000,
                ref_name="bare Starlette",
                goal=">= 0.6x",
                met=False,
            ),
            Figure(
                job="scale",
                what="bytes per task",
                value=900,
                unit="B",
                goal="< 2 KB",
                met=True,
                notes=("a seeded task holds 4 image URLs",),
            ),
        ],
        "2026-12-01 20:00, nproc 2, load 0.50/0.40/0.30",
    )
    lines = text.splitlines()
    assert lines[0].startswith("2026-12-01") and "nproc 2" in lines[0]
    row = next(line for line in lines if "GET /v1/tasks" in line)
    assert "3,000 req/s" in row and "6,000 req/s (bare Starlette)" in row and "0.50x" in row
    assert row.rstrip(" |").endswith("NO")
    assert "- scale, bytes per task: a seeded task holds 4 image URLs" in lines


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (scripts/bench installs it)")
def test_jobs_run_in_one_go_and_print_one_table(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(opts: object) -> list[Figure]:
        raise RuntimeError("the simulator would not start")

    real = bench_jobs._runner
    monkeypatch.setattr(bench_jobs, "_runner", lambda job: broken if job == "poll" else real(job))
    lines: list[str] = []
    code = bench_jobs.run(
        ["ingest", "poll", "deliver"], seconds=1, connections=4, quick=True, out=lines.append
    )
    assert code == 1
    text = "\n".join(lines)
    final = text[text.rindex("jobhook bench ingest poll deliver") :]
    assert "nproc" in final.splitlines()[0]
    assert "| ingest  | signed callbacks" in final and "bare Starlette" in final
    assert "| deliver | outbox drain" in final and "raw httpx" in final
    assert "FAILED poll on sqlite: RuntimeError: the simulator would not start" in final
