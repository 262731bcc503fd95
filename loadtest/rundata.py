"""A recorded run, read back for the report: Locust's CSV, the tally's files, sampled metrics.

Files of a run with ``--csv <prefix>`` (only ``_jobs.json`` and ``_events.json`` are required):

- ``<prefix>_stats_history.csv``: Locust's, one ``Aggregated`` row a second (users over time);
- ``<prefix>_jobs.json`` and ``<prefix>_events.json``: ``report.JobTally``;
- ``<prefix>_metrics.csv``: ``sampler.MetricsSampler`` (queue depth, runner busy, ...).

Everything is put on one clock, seconds since the first record, and cut into windows of
``window_s`` seconds: rates per window are what the plots draw.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from report import pct


@dataclass(frozen=True)
class Window:
    start_s: float
    users: int
    offered_items_s: float
    """Items in submits accepted during the window, per second."""
    finished_items_s: float
    """Items of jobs that became terminal during the window, per second."""
    refused_s: dict[int, float]
    """HTTP status (409, 429, 503) -> answers per second, retries included."""


@dataclass(frozen=True)
class Run:
    name: str
    duration_s: float
    window_s: float
    summary: dict
    users: list[tuple[float, int]]
    windows: list[Window]
    terminal_s: dict[int, list[float]]
    """Job size -> sorted seconds from submit to terminal."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    """(metric, series label) -> (seconds, value) samples, from ``_metrics.csv``."""
    metrics_note: str = ""

    @property
    def max_users(self) -> int:
        return max((u for _, u in self.users), default=0)

    def percentiles(self) -> dict[int, tuple[float, float, float]]:
        return {size: (pct(s, 0.5), pct(s, 0.95), pct(s, 0.99))
                for size, s in sorted(self.terminal_s.items()) if s}


def _read_users(path: Path) -> list[tuple[float, int]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [(float(r["Timestamp"]), int(r["User Count"])) for r in csv.DictReader(f)
                if r["Name"] == "Aggregated"]


def _read_metrics(path: Path) -> list[tuple[float, str, str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [(float(r["time"]), r["metric"], r["series"], float(r["value"]))
                for r in csv.DictReader(f)]


def load_run(prefix: str | Path, window_s: float = 10.0) -> Run:
    """Read the files of the run written with ``--csv prefix``."""
    prefix = str(prefix)
    summary = json.loads(Path(f"{prefix}_jobs.json").read_text())
    events = json.loads(Path(f"{prefix}_events.json").read_text())
    users = _read_users(Path(f"{prefix}_stats_history.csv"))
    samples = _read_metrics(Path(f"{prefix}_metrics.csv"))

    stamps = ([t for t, _ in users] + [t for t, _ in events["accepted"]]
              + [j[1] for j in events["jobs"]] + [s[0] for s in samples])
    if not stamps:
        raise ValueError(f"{prefix}: the run recorded nothing")
    t0, t1 = min(stamps), max(stamps)
    n = max(1, int((t1 - t0) // window_s) + 1)

    offered, finished = [0.0] * n, [0.0] * n
    refused: list[dict[int, float]] = [defaultdict(float) for _ in range(n)]
    peak = [0] * n
    def slot(t: float) -> int:
        return min(n - 1, int((t - t0) // window_s))
    for t, items in events["accepted"]:
        offered[slot(t)] += items
    terminal_s: dict[int, list[float]] = defaultdict(list)
    for accepted, done, items, _ok in events["jobs"]:
        finished[slot(done)] += items
        terminal_s[items].append(done - accepted)
    for t, status in events["refused"]:
        refused[slot(t)][status] += 1
    for t, u in users:
        peak[slot(t)] = max(peak[slot(t)], u)
    width = [min(window_s, max(1.0, t1 - t0 - i * window_s)) for i in range(n)]  # last: partial
    windows = [Window(round(i * window_s, 3), peak[i], offered[i] / width[i],
                      finished[i] / width[i], {s: c / width[i] for s, c in refused[i].items()})
               for i in range(n)]

    series: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for t, metric, label, value in samples:
        series[(metric, label)].append((t - t0, value))
    sources = sorted({label.split(" ")[0] for _, _, label, _ in samples})
    note = (f"sampled from the /metrics of {', '.join(sources)}" if samples else
            "none (no _metrics.csv: set INFERQ_LOADTEST_METRICS_URLS, or run against "
            "`inferq dev` on this machine)")
    return Run(name=Path(prefix).name, duration_s=t1 - t0, window_s=window_s, summary=summary,
               users=[(t - t0, u) for t, u in users], windows=windows,
               terminal_s={k: sorted(v) for k, v in terminal_s.items()},
               series=dict(series), metrics_note=note)
