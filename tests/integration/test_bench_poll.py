"""The bench's poll job in quick mode on SQLite: real processes (the bench's simulator, one
`jobhook serve`), a few live tasks, a short window; every figure is there and polls happened."""

from __future__ import annotations

import math
from pathlib import Path

from service.bench_poll import run_poll
from service.bench_report import Options, machine, table


def test_quick_poll_bench_reports_every_figure_with_polls(tmp_path: Path) -> None:
    figures = run_poll(Options(work=tmp_path, quick=True), tasks=40)

    assert [f.what for f in figures] == [
        "polls/s, 40 live APIMart tasks",
        "gap between polls of a task, p50",
        "gap between polls of a task, p99",
        "gap between polls of a task, max",
        "live tasks not polled in the window",
        "CPU per poll",
    ]
    rate, p50, p99, top, starved, cpu = figures
    assert rate.value > 0 and rate.reference == 40 / 4.0
    assert "% of polls changed the task (changed " in rate.notes[1]
    assert 0 < p50.value <= p99.value <= top.value
    assert p99.goal == "<= 5.8 s" and p99.reference == 5.8
    assert 0 <= starved.value < 40  # a loaded machine may leave one out of a short window
    assert cpu.value > 0 and not math.isnan(cpu.value)
    assert "CPU per poll" in table(figures, machine())
