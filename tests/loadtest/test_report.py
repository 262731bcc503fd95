"""The capacity report, built from a recorded run.

``data/run_*`` is a real 80 s step ramp (4 to 16 users, mix ``1:50,32:35,200:15``, two tenants
of which one is limited to 1,500 items/min) against ``inferq dev --backend simulated`` with
``INFERQ_SIM_BATCH_MS=5 INFERQ_SIM_TOKEN_US=40``: Locust's stats history, the tally's
``_jobs.json``/``_events.json`` and the sampler's ``_metrics.csv``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
RUN = Path(__file__).resolve().parent / "data" / "run"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def loadtest_path(monkeypatch):
    """The harness's modules import each other by bare name, as Locust loads them."""
    monkeypatch.syspath_prepend(str(ROOT / "loadtest"))


def test_the_report_command_writes_html_that_shows_every_png(tmp_path: Path):
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, str(ROOT / "loadtest" / "report.py"), str(RUN),
                           "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    shown = re.findall(r'<img src="([^"]+)"', page)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert sorted(shown) == pngs == ["queue_runners.png", "refusals.png", "throughput.png",
                                     "time_to_terminal.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name  # drawn, not blank
    assert re.search(r'<img src="throughput.png" alt="Items/s against offered load"', page)
    assert re.search(r"sampled from the /metrics of runner:\d+, scheduler:\d+", page)


def test_the_run_is_read_onto_one_clock(loadtest_path):
    from rundata import load_run

    run = load_run(RUN, window_s=10)
    assert run.max_users == 16
    assert 75 < run.duration_s < 95 and len(run.windows) == 9
    # Every terminal job's items land in one window: the windows add up to the tally.
    finished = sum(w.finished_items_s * min(10, run.duration_s - w.start_s) for w in run.windows)
    assert finished == pytest.approx(run.summary["items_terminal"], rel=0.01)
    assert set(run.percentiles()) == {1, 32, 200}
    p50, p95, p99 = run.percentiles()[200]
    assert 0 < p50 <= p95 <= p99
    # The limited tenant met 429s; nothing was refused 503.
    assert sum(w.refused_s.get(429, 0) for w in run.windows) > 0
    assert all(503 not in w.refused_s for w in run.windows)
    metrics = {m for m, _ in run.series}
    assert {"inferq_queue_depth_items", "inferq_runner_busy_ratio"} <= metrics


def test_a_run_without_sampled_metrics_still_reports(tmp_path: Path, loadtest_path):
    """No _metrics.csv (a remote gateway, no discovery): the plots say so instead of failing."""
    for suffix in ("_jobs.json", "_events.json", "_stats_history.csv"):
        shutil.copy(f"{RUN}{suffix}", tmp_path / f"run{suffix}")
    import report

    assert report.main([str(tmp_path / "run"), "-o", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "none (no _metrics.csv" in page
    assert (tmp_path / "out" / "queue_runners.png").read_bytes().startswith(PNG_MAGIC)


def test_the_tally_records_what_the_plots_need(loadtest_path):
    from report import JobTally

    tally = JobTally()
    tally.submitted(32)
    tally.rejected(429)
    tally.terminal(32, 1.5, ok=True)
    summary, timeline = tally.summary(), tally.timeline()
    assert summary["by_job_size"]["32"]["terminal_p95_s"] == 1.5
    assert [n for _, n in timeline["accepted"]] == [32]
    (accepted, done, size, ok), = timeline["jobs"]
    assert done - accepted == pytest.approx(1.5, abs=0.01) and size == 32 and ok
    assert [s for _, s in timeline["refused"]] == [429]


def test_sampler_reads_the_gauges_and_finds_inferq_dev_roles(tmp_path: Path, loadtest_path):
    from sampler import dev_metrics_urls, parse_gauges

    text = ("# TYPE inferq_queue_depth_items gauge\n"
            'inferq_queue_depth_items{model="minilm",priority="batch"} 12.0\n'
            "# TYPE inferq_jobs_submitted_total counter\n"
            'inferq_jobs_submitted_total{model="minilm",priority="batch"} 3.0\n')
    assert parse_gauges(text) == [("inferq_queue_depth_items", "model=minilm,priority=batch",
                                   12.0)]
    # A fake /proc: inferq dev's runner and scheduler on port 8731, another stack's on 9000.
    for pid, role, http, metrics in ((11, "runner", 8731, 5001), (12, "scheduler", 8731, 5002),
                                     (13, "gateway", 8731, None), (14, "runner", 9000, 5003)):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(b"\0".join([b"python", b"-m", b"inferq.cli",
                                                role.encode(), b""]))
        env = f"INFERQ_HTTP_PORT={http}\0" + (f"INFERQ_METRICS_PORT={metrics}\0"
                                               if metrics else "")
        (d / "environ").write_bytes(env.encode())
    assert dev_metrics_urls("http://127.0.0.1:8731", proc=tmp_path) == {
        "runner:5001": "http://127.0.0.1:5001/metrics",
        "scheduler:5002": "http://127.0.0.1:5002/metrics"}
