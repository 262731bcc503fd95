"""The capacity-planning summary of a run: items/s and submit-to-terminal time per job size.

Locust's own statistics count requests, not items, and its percentiles mix job sizes; this tally
keeps per-size outcomes so the end of a run can say how many items per second the service
finished and how long a job of each size took to become terminal. It is per process: under
``--processes``/distributed runs read the ``JOB`` rows of Locust's CSV instead.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MAX_SAMPLES = 200_000
"""Per size; a bounded run at realistic rates stays far below, this only caps memory."""


@dataclass
class SizeTally:
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    items_terminal: int = 0
    seconds_to_terminal: list[float] = field(default_factory=list)


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return round(sorted_values[i], 3)


class JobTally:
    """Counts jobs by size from submit to terminal; ``summary()`` turns them into rates."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.by_size: dict[int, SizeTally] = defaultdict(SizeTally)

    def reset(self) -> None:
        """Start counting afresh (a new test started in the same process)."""
        self.started = time.monotonic()
        self.by_size.clear()

    def submitted(self, size: int) -> None:
        self.by_size[size].submitted += 1

    def terminal(self, size: int, seconds: float, ok: bool) -> None:
        t = self.by_size[size]
        t.succeeded += ok
        t.failed += not ok
        t.items_terminal += size
        if len(t.seconds_to_terminal) < MAX_SAMPLES:
            t.seconds_to_terminal.append(seconds)

    def summary(self) -> dict:
        elapsed = max(1e-9, time.monotonic() - self.started)
        sizes = {}
        for size, t in sorted(self.by_size.items()):
            s = sorted(t.seconds_to_terminal)
            sizes[str(size)] = {
                "jobs_submitted": t.submitted, "jobs_succeeded": t.succeeded,
                "jobs_failed": t.failed, "items_per_s": round(t.items_terminal / elapsed, 2),
                "terminal_p50_s": _pct(s, 0.50), "terminal_p99_s": _pct(s, 0.99),
            }
        items = sum(t.items_terminal for t in self.by_size.values())
        return {"elapsed_s": round(elapsed, 1), "items_terminal": items,
                "items_per_s": round(items / elapsed, 2), "by_job_size": sizes}

    def write(self, csv_prefix: str | None) -> str:
        """Print-ready text; also ``<csv_prefix>_jobs.json`` when Locust writes CSVs."""
        data = self.summary()
        if csv_prefix:
            Path(f"{csv_prefix}_jobs.json").write_text(json.dumps(data, indent=2) + "\n")
        lines = [f"inferq: {data['items_terminal']} items terminal in {data['elapsed_s']} s "
                 f"= {data['items_per_s']} items/s"]
        for size, row in data["by_job_size"].items():
            lines.append(f"  n={size:>5}: {row['jobs_succeeded']} ok / {row['jobs_failed']} "
                         f"failed of {row['jobs_submitted']} submitted, terminal p50 "
                         f"{row['terminal_p50_s']} s p99 {row['terminal_p99_s']} s")
        return "\n".join(lines)
