"""The capacity-planning report of a run: a tally while it runs, an HTML page with plots after.

Locust's own statistics count requests, not items, and its percentiles mix job sizes; the
``JobTally`` keeps per-size outcomes so the end of a run can say how many items per second the
service finished and how long a job of each size took to become terminal. It also keeps a
timeline (when each job was accepted and became terminal, each 429/503) for the plots. It is
per process: under ``--processes``/distributed runs read the ``JOB`` rows of Locust's CSV.

After a run with ``--csv out/run``, draw the report (needs matplotlib, the ``loadtest`` extra):

    python loadtest/report.py out/run [-o out/run_report] [--window 10]

which writes ``index.html`` and its PNG plots (items/s against offered load, time to terminal
per job size, queue depth and runner busy over time, 429/503 rates) into the output folder.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MAX_SAMPLES = 200_000
"""Per size and per timeline; a bounded run at realistic rates stays far below, this only caps
memory."""


@dataclass
class SizeTally:
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    items_terminal: int = 0
    seconds_to_terminal: list[float] = field(default_factory=list)


def pct(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of already sorted values, to the millisecond."""
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[i], 3)


class JobTally:
    """Counts jobs by size from submit to terminal; ``summary()`` turns them into rates."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (a new test started in the same process)."""
        self.started = time.monotonic()
        self.by_size: dict[int, SizeTally] = defaultdict(SizeTally)
        self.accepted: list[tuple[float, int]] = []
        """(wall time, items) per accepted submit: the load that got in."""
        self.jobs: list[tuple[float, float, int, bool]] = []
        """(wall time accepted, wall time terminal, items, ok) per terminal job."""
        self.refused: list[tuple[float, int]] = []
        """(wall time, HTTP status) per 409/429/503 answer, retries included."""

    def submitted(self, size: int) -> None:
        self.by_size[size].submitted += 1
        if len(self.accepted) < MAX_SAMPLES:
            self.accepted.append((time.time(), size))

    def terminal(self, size: int, seconds: float, ok: bool) -> None:
        t = self.by_size[size]
        t.succeeded += ok
        t.failed += not ok
        t.items_terminal += size
        if len(t.seconds_to_terminal) < MAX_SAMPLES:
            t.seconds_to_terminal.append(seconds)
        if len(self.jobs) < MAX_SAMPLES:
            now = time.time()
            self.jobs.append((round(now - seconds, 3), round(now, 3), size, ok))

    def rejected(self, status: int) -> None:
        if len(self.refused) < MAX_SAMPLES:
            self.refused.append((round(time.time(), 3), status))

    def summary(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - self.started)
        sizes = {}
        for size, t in sorted(self.by_size.items()):
            s = sorted(t.seconds_to_terminal)
            sizes[str(size)] = {
                "jobs_submitted": t.submitted, "jobs_succeeded": t.succeeded,
                "jobs_failed": t.failed, "items_per_s": round(t.items_terminal / elapsed, 2),
                "terminal_p50_s": pct(s, 0.50), "terminal_p95_s": pct(s, 0.95),
                "terminal_p99_s": pct(s, 0.99),
            }
        items = sum(t.items_terminal for t in self.by_size.values())
        return {"elapsed_s": round(elapsed, 1), "items_terminal": items,
                "items_per_s": round(items / elapsed, 2), "by_job_size": sizes}

    def timeline(self) -> dict:
        """What the plots need beyond the summary (``<csv_prefix>_events.json``)."""
        return {"accepted": [[round(t, 3), n] for t, n in self.accepted],
                "jobs": [list(j) for j in self.jobs],
                "refused": [list(r) for r in self.refused]}

    def write(self, csv_prefix: str | None) -> str:
        """Print-ready text; also ``<csv_prefix>_jobs.json`` and ``_events.json`` when Locust
        writes CSVs."""
        data = self.summary()
        if csv_prefix:
            Path(f"{csv_prefix}_jobs.json").write_text(json.dumps(data, indent=2) + "\n")
            Path(f"{csv_prefix}_events.json").write_text(json.dumps(self.timeline()) + "\n")
        lines = [f"inferq: {data['items_terminal']} items terminal in {data['elapsed_s']} s "
                 f"= {data['items_per_s']} items/s"]
        for size, row in data["by_job_size"].items():
            lines.append(f"  n={size:>5}: {row['jobs_succeeded']} ok / {row['jobs_failed']} "
                         f"failed of {row['jobs_submitted']} submitted, terminal p50 "
                         f"{row['terminal_p50_s']} s p99 {row['terminal_p99_s']} s")
        return "\n".join(lines)


def _html(run, plots: list[tuple[str, str, str]]) -> str:
    """The page: what ran, the per-size table, then each plot with a sentence on reading it."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s)}</td><td>{r['jobs_succeeded']}</td><td>{r['jobs_failed']}</td>"
        f"<td>{r['items_per_s']}</td><td>{r['terminal_p50_s']}</td>"
        f"<td>{r.get('terminal_p95_s')}</td><td>{r['terminal_p99_s']}</td></tr>"
        for s, r in run.summary.get("by_job_size", {}).items())
    figures = "".join(
        f'<figure><img src="{e(name)}" alt="{e(title)}" width="900">'
        f"<figcaption><b>{e(title)}.</b> {e(caption)}</figcaption></figure>"
        for name, title, caption in plots)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>inferq capacity report: {e(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:auto;padding:1em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:.2em .6em;text-align:right}}
img{{max-width:100%;height:auto}}figure{{margin:2em 0}}</style></head><body>
<h1>inferq capacity report</h1>
<p>Run <code>{e(run.name)}</code>: {run.duration_s:.0f} s, up to {run.max_users} users,
{run.summary.get('items_terminal', 0)} items terminal, {run.summary.get('items_per_s', 0)}
items/s over the run. Server-side series: {e(run.metrics_note)}.</p>
<h2>Per job size</h2>
<table><tr><th>items per job</th><th>jobs ok</th><th>jobs failed</th><th>items/s</th>
<th>terminal p50 s</th><th>p95 s</th><th>p99 s</th></tr>{rows}</table>
<h2>Plots</h2>{figures}
<p>Method and caveats: docs/loadtest.md. Time to terminal is measured by the client, to the
resolution of its polls (Retry-After).</p>
</body></html>
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the HTML capacity report of a run.")
    parser.add_argument("prefix", help="the run's --csv prefix, e.g. out/run")
    parser.add_argument("-o", "--out", help="output folder (default: <prefix>_report)")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds per point of the rate plots (default 10)")
    args = parser.parse_args(argv)
    from plots import draw_all  # matplotlib: only the report needs it, not the load test
    from rundata import load_run

    run = load_run(args.prefix, window_s=args.window)
    out = Path(args.out or f"{args.prefix}_report")
    out.mkdir(parents=True, exist_ok=True)
    plots = draw_all(run, out)
    (out / "index.html").write_text(_html(run, plots), encoding="utf-8")
    print(f"wrote {out / 'index.html'} and {len(plots)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
