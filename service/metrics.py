"""Prometheus metrics: counters and a latency histogram kept in this process, and gauges read
from the store at scrape time (so every process's work shows in the queue depths)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

LabelValues = tuple[str, ...]

#: Seconds; an ingest is one group-committed SQLite transaction.
INGEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: Seconds a poll ran after its due time.
POLL_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
SUBMIT_WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


def _labels(names: Sequence[str], values: LabelValues) -> str:
    if not names:
        return ""
    pairs = ",".join(
        f'{n}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for n, v in zip(names, values, strict=True)
    )
    return "{" + pairs + "}"


class Counter:
    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self.values: defaultdict[LabelValues, float] = defaultdict(float)

    def inc(self, *values: str, amount: float = 1.0) -> None:
        self.values[values] += amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for values, count in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labels, values)} {count:g}"


class Histogram:
    def __init__(self, name: str, help_: str, buckets: Sequence[float]) -> None:
        self.name, self.help, self.buckets = name, help_, tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        total = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            total += count
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            yield f'{self.name}_bucket{{le="{le}"}} {total}'
        yield f"{self.name}_sum {self.sum:.6f}"
        yield f"{self.name}_count {total}"


def gauge(
    name: str, help_: str, labels: Sequence[str], rows: Iterable[tuple[LabelValues, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
    lines += [f"{name}{_labels(labels, values)} {value:g}" for values, value in rows]
    return lines


def counter(
    name: str, help_: str, labels: Sequence[str], rows: Iterable[tuple[LabelValues, float]]
) -> list[str]:
    """A counter kept elsewhere (e.g. by the rate limits), rendered at scrape time."""
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
    lines += [f"{name}{_labels(labels, values)} {value:g}" for values, value in rows]
    return lines


class Metrics:
    """The counters this process keeps; `render` adds the store's gauges."""

    def __init__(self) -> None:
        self.observations = Counter(
            "jobhook_observations_total",
            "Observations ingested, by source and outcome.",
            ("source", "outcome"),
        )
        self.callbacks = Counter(
            "jobhook_callbacks_received_total",
            "Provider callbacks accepted (2xx), by provider.",
            ("provider",),
        )
        self.callbacks_rejected = Counter(
            "jobhook_callbacks_rejected_total",
            "Provider callbacks refused, by provider and reason.",
            ("provider", "reason"),
        )
        self.polls = Counter(
            "jobhook_polls_total", "Provider polls, by provider and result.", ("provider", "result")
        )
        self.deliveries = Counter(
            "jobhook_deliveries_total", "Webhook delivery attempts, by result.", ("result",)
        )
        self.ingest_seconds = Histogram(
            "jobhook_ingest_seconds",
            "Time from an observation to its committed transition.",
            INGEST_BUCKETS,
        )
        self.poll_lag = Histogram(
            "jobhook_poll_lag_seconds",
            "How late each poll ran against its due time (this process's poller).",
            POLL_LAG_BUCKETS,
        )
        self.submissions = Counter(
            "jobhook_queued_submissions_total",
            "Attempts at sending a queued task, by provider and result.",
            ("provider", "result"),
        )
        self.submit_wait = Histogram(
            "jobhook_submit_wait_seconds",
            "How long a queued task waited before its provider took it (this process's sends).",
            SUBMIT_WAIT_BUCKETS,
        )

    def render(self, gauges: Iterable[str]) -> str:
        lines: list[str] = []
        for metric in (
            self.observations,
            self.callbacks,
            self.callbacks_rejected,
            self.polls,
            self.deliveries,
        ):
            lines += metric.render()
        lines += self.ingest_seconds.render()
        lines += self.poll_lag.render()
        lines += self.submissions.render()
        lines += self.submit_wait.render()
        lines += gauges
        return "\n".join(lines) + "\n"
