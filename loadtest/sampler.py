"""Sample the service's own gauges during a run, for the report's plots over time.

Queue depth and oldest age live in the scheduler's ``/metrics``, runner busy ratios in each
runner's; the load test only sees the gateway. ``MetricsSampler`` scrapes a list of
``/metrics`` URLs every few seconds and appends the gauges below to ``<prefix>_metrics.csv``.

The URLs are ``INFERQ_LOADTEST_METRICS_URLS`` (comma separated), else those of the
``inferq dev`` serving ``--host`` on this machine: its roles get free metrics ports, found in
their environment (Linux ``/proc``; processes of this user only). Every URL must be loopback,
like the target.
"""

from __future__ import annotations

import csv
import logging
import os
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from loadconfig import check_loopback
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("inferq.loadtest")
GAUGES = ("inferq_queue_depth_items", "inferq_queue_oldest_age_seconds",
          "inferq_runner_busy_ratio", "inferq_desired_runners")
EVERY_S = 2.0


def dev_metrics_urls(host_url: str, proc: Path = Path("/proc")) -> dict[str, str]:
    """Role -> metrics URL of the ``inferq dev`` roles whose gateway port is ``host_url``'s."""
    port = str(urlsplit(host_url).port or 80)
    found: dict[str, str] = {}
    for pid_dir in proc.glob("[0-9]*"):
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            env = dict(kv.split(b"=", 1) for kv in (pid_dir / "environ").read_bytes()
                       .split(b"\0") if b"=" in kv)
        except OSError:  # gone, or another user's process
            continue
        if b"inferq.cli" not in argv or env.get(b"INFERQ_HTTP_PORT", b"").decode() != port:
            continue
        role = argv[argv.index(b"inferq.cli") + 1].decode()
        metrics_port = env.get(b"INFERQ_METRICS_PORT", b"").decode()
        if role != "gateway" and metrics_port.isdigit():
            found[f"{role}:{metrics_port}"] = f"http://127.0.0.1:{metrics_port}/metrics"
    return found


def metrics_urls(host_url: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """Source name -> URL: the configured ones, else the gateway plus ``inferq dev``'s roles."""
    e = os.environ if env is None else env
    given = [u.strip() for u in e.get("INFERQ_LOADTEST_METRICS_URLS", "").split(",") if u.strip()]
    if given:
        return {urlsplit(u).netloc: u for u in given}
    return {"gateway": host_url.rstrip("/") + "/metrics", **dev_metrics_urls(host_url)}


def parse_gauges(text: str) -> list[tuple[str, str, float]]:
    """(metric, labels as ``k=v,...``, value) of the ``GAUGES`` in one exposition."""
    out = []
    for family in text_string_to_metric_families(text):
        if family.name in GAUGES:
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out.append((family.name, labels, s.value))
    return out


class MetricsSampler:
    """Scrape ``urls`` every ``every_s`` seconds into ``path`` until ``stop()``."""

    def __init__(self, urls: dict[str, str], path: Path, every_s: float = EVERY_S) -> None:
        for url in urls.values():
            if (why := check_loopback(url)) is not None:
                raise ValueError(f"metrics URL refused: {why}")
        self._urls, self._path, self._every = urls, path, every_s
        self._task = None  # a gevent Greenlet while sampling

    def start(self) -> None:
        import gevent  # Locust's event loop; the functions above work without it

        if self._task is None:
            self._task = gevent.spawn(self._run)

    def stop(self) -> None:
        """Idempotent; the CSV is complete once it returns."""
        task, self._task = self._task, None
        if task is not None:
            task.kill(block=True, timeout=5)

    def _run(self) -> None:
        import gevent

        with self._path.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["time", "metric", "series", "value"])
            while True:
                now = round(time.time(), 3)
                for source, url in self._urls.items():
                    try:
                        with urllib.request.urlopen(url, timeout=2) as r:
                            text = r.read().decode()
                    except OSError as exc:
                        log.debug("metrics %s: %s", url, exc)
                        continue
                    for metric, labels, value in parse_gauges(text):
                        out.writerow([now, metric, f"{source} {labels}", value])
                f.flush()
                gevent.sleep(self._every)
