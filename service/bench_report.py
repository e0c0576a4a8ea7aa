"""What every `jobhook bench` job returns, and the one table `jobhook bench all` prints.

A job measures jobhook and, in the same run, a reference (bare Starlette, a raw httpx loop, the
same lookup at 1k tasks, the intended pace): a `Figure` is one such pair with the goal it is
judged by. Ratios, not absolutes, are what to read: the machines are shared and noisy.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What every job is given. `database_url` None: the job makes its own SQLite file in
    `work`; else a fresh, migrated-or-empty PostgreSQL database the job may fill and leave."""

    work: Path
    seconds: int = 10
    connections: int = 64
    store: str = "sqlite"  # or "postgres"
    database_url: str | None = None
    quick: bool = False  # tests: small sizes, short windows, same code path


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    job: str  # "ingest", "lookup", "scale", "poll", "deliver"
    what: str  # "GET /v1/tasks/{id}, 100k tasks"
    value: float
    unit: str  # "req/s", "ms", "polls/s", "B/task", "MB", "tasks"
    #: the same measure of the reference in the same run (None: the goal is absolute)
    reference: float | None = None
    ref_name: str = ""  # "bare Starlette", "raw httpx", "at 1k tasks", "pace 4.8 s + 1 s"
    #: "higher" (throughput: ratio = value / reference) or "lower" (latency, bytes)
    better: str = "higher"
    goal: str = ""  # ">= 0.6x", "<= 2x", "<= 5.8 s", "< 80 MB"
    met: bool | None = None  # None: no goal, or not judged
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ratio(self) -> float | None:
        if self.reference is None or self.reference == 0:
            return None
        return self.value / self.reference


def machine() -> str:
    """The header: when, where, how loaded."""
    load = "/".join(f"{n:.2f}" for n in os.getloadavg())
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')}, nproc {len(os.sched_getaffinity(0))}, "
        f"load {load}, Python {platform.python_version()}"
    )


def _num(value: float, unit: str) -> str:
    if value != value:  # nan
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}"


def table(figures: list[Figure], header: str) -> str:
    rows = [("job", "what", "jobhook", "reference", "ratio", "goal", "met")]
    for f in figures:
        ref = f"{_num(f.reference, f.unit)} ({f.ref_name})" if f.reference is not None else "-"
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        met = {True: "yes", False: "NO", None: ""}[f.met]
        rows.append((f.job, f.what, _num(f.value, f.unit), ref, ratio, f.goal, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [header, ""]
    for n, row in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [f"- {f.job}, {f.what}: {note}" for f in figures for note in f.notes]
    return "\n".join([*lines, *(["", *notes] if notes else [])])
