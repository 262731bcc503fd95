"""The report's PNG plots, one function per figure, drawn with matplotlib (no display needed).

Each function takes a ``rundata.Run`` and a path and returns nothing; ``draw_all`` draws every
figure and returns (file name, title, how to read it) for the HTML page.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit

import matplotlib.pyplot as plt  # after choosing the backend
from rundata import Run

DPI = 100


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def throughput(run: Run, path: Path) -> None:
    """Finished items/s against offered items/s per window (colour: users), and both over
    time with the user count."""
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = [w.offered_items_s for w in run.windows]
    ys = [w.finished_items_s for w in run.windows]
    dots = ax.scatter(xs, ys, c=[w.users for w in run.windows], cmap="viridis", s=28)
    by_users: dict[int, list] = defaultdict(list)
    for w in run.windows:
        if w.users:
            by_users[w.users].append(w)
    if len(by_users) > 1:  # a step ramp: one mean per load level
        levels = sorted(by_users)
        ax.plot([sum(w.offered_items_s for w in by_users[u]) / len(by_users[u]) for u in levels],
                [sum(w.finished_items_s for w in by_users[u]) / len(by_users[u]) for u in levels],
                "k-", lw=1, label="mean per user level")
        ax.legend(loc="upper left")
    top = max([*xs, *ys, 1.0])
    ax.plot([0, top], [0, top], ls=":", c="grey")
    ax.set(xlabel="offered: items/s in accepted submits", ylabel="finished: items/s terminal",
           title=f"Items/s against offered load ({run.window_s:.0f} s windows)")
    fig.colorbar(dots, ax=ax, label="users")
    t = [w.start_s for w in run.windows]
    ax_t.step(t, xs, where="post", label="offered")
    ax_t.step(t, ys, where="post", label="finished")
    ax_t.set(xlabel="seconds", ylabel="items/s", title="Over time")
    ax_t.legend(loc="upper left")
    if run.users:
        users = ax_t.twinx()
        users.plot([u[0] for u in run.users], [u[1] for u in run.users], c="grey", lw=1)
        users.set_ylabel("users (grey)")
    _save(fig, path)


def time_to_terminal(run: Run, path: Path) -> None:
    """p50, p95 and p99 of submit-to-terminal seconds, a group of bars per job size."""
    fig, ax = plt.subplots(figsize=(8, 4.2))
    rows = run.percentiles()
    sizes = list(rows)
    for k, (label, width) in enumerate((("p50", 0), ("p95", 1), ("p99", 2))):
        vals = [rows[s][width] for s in sizes]
        bars = ax.bar([i + (k - 1) * 0.27 for i in range(len(sizes))], vals, 0.27, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(sizes)),
                  [f"{s} item{'s' if s > 1 else ''}\n({len(run.terminal_s[s])} jobs)"
                   for s in sizes])
    ax.set(ylabel="seconds, submit to terminal", title="Time to terminal per job size")
    ax.legend()
    _save(fig, path)


def _series_axis(ax, run: Run, metric: str, ylabel: str) -> None:
    drawn = False
    for (name, label), points in sorted(run.series.items()):
        if name == metric and points:
            source, _, labels = label.partition(" ")
            values = " ".join(kv.partition("=")[2] for kv in labels.split(",") if kv)
            ax.plot([p[0] for p in points], [p[1] for p in points], lw=1.2,
                    label=f"{values} ({source})")
            drawn = True
    ax.set_ylabel(ylabel)
    if drawn:
        ax.legend(fontsize=7, loc="upper left")
    else:
        ax.text(0.5, 0.5, f"no {metric} samples", ha="center", va="center",
                transform=ax.transAxes, color="grey")


def queue_and_runners(run: Run, path: Path) -> None:
    """The service's view over the run: queued items, oldest age, runner busy ratio."""
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    _series_axis(axes[0], run, "inferq_queue_depth_items", "queued items")
    _series_axis(axes[1], run, "inferq_queue_oldest_age_seconds", "oldest queued, s")
    _series_axis(axes[2], run, "inferq_runner_busy_ratio", "runner busy ratio")
    axes[2].set_ylim(0, 1.05)
    axes[0].set_title("Queue depth and runner busy over time")
    axes[2].set_xlabel("seconds")
    _save(fig, path)


def refusals(run: Run, path: Path) -> None:
    """429 (slow down) and 503 (just wait) answers per second, 409 too when there were any."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    t = [w.start_s for w in run.windows]
    statuses = sorted({s for w in run.windows for s in w.refused_s} | {429, 503})
    for status in statuses:
        ax.step(t, [w.refused_s.get(status, 0.0) for w in run.windows], where="post",
                label=str(status))
    ax.set(xlabel="seconds", ylabel="answers/s",
           title=f"Refused submits, polls and pages ({run.window_s:.0f} s windows)")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    _save(fig, path)


FIGURES = (
    ("throughput.png", "Items/s against offered load", throughput,
     "Each dot is a window; on the dotted diagonal the service keeps up. Where dots fall below "
     "it as the load grows, the runners are saturated: that finished rate is the capacity."),
    ("time_to_terminal.png", "Time to terminal per job size", time_to_terminal,
     "Client-measured seconds from the first submit attempt to the poll that saw the job "
     "terminal, p50/p95/p99 per job size."),
    ("queue_runners.png", "Queue depth and runner busy over time", queue_and_runners,
     "Sampled from the scheduler's and runners' /metrics. A queue that keeps growing while "
     "busy ratios sit near 1 needs more runners."),
    ("refusals.png", "429 and 503 rates", refusals,
     "429: a tenant over its rate or quota (slow down). 503: the system over its backlog "
     "limit or a dependency down (just wait). Retries included."),
)


def draw_all(run: Run, out: Path) -> list[tuple[str, str, str]]:
    """Draw every figure into ``out``; (file name, title, caption) for each."""
    for name, _title, draw, _caption in FIGURES:
        draw(run, out / name)
    return [(name, title, caption) for name, title, _draw, caption in FIGURES]
