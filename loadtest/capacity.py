"""Per-runner capacity μ from the roles' own counters, and the runners a target rate needs.

    python loadtest/capacity.py URL [URL ...] [--rate 1000] [--busy 0.7]
    python loadtest/capacity.py --host http://127.0.0.1:8000 ...   # an ``inferq dev``

The URLs are the schedulers' and runners' ``/metrics`` (loopback only, like the load test), or
with ``--host`` those of the ``inferq dev`` whose gateway that is, found as the sampler does.
After a run, their counters say how many items went into batches (schedulers:
``inferq_batch_size_sum``) and how long the runners spent inferring them
(``inferq_inference_seconds_sum``): μ = items ÷ inference seconds, the items per second one
runner finishes while fully busy, for the mix of lengths the run sent. ``--rate`` λ then gives
``N = ceil(λ / (μ * busy))`` (docs/capacity.md explains the busy target).
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.request
from dataclasses import dataclass

from loadconfig import check_loopback
from prometheus_client.parser import text_string_to_metric_families
from sampler import dev_metrics_urls


@dataclass
class Totals:
    """What the counters add up to over every URL."""

    batched_items: float = 0.0
    batches: float = 0.0
    inference_s: float = 0.0
    runners: int = 0

    @property
    def mu(self) -> float | None:
        """Items per second of inference: one fully busy runner's capacity."""
        return self.batched_items / self.inference_s if self.inference_s else None


def add(totals: Totals, exposition: str) -> None:
    """Add one role's ``/metrics`` text to ``totals``."""
    runner = False
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == "inferq_batch_size_sum":
                totals.batched_items += s.value
            elif s.name == "inferq_batch_size_count":
                totals.batches += s.value
            elif s.name == "inferq_inference_seconds_sum":
                totals.inference_s += s.value
                runner = True
    totals.runners += runner


def runners_needed(rate: float, mu: float, busy: float) -> int:
    """Runners that finish ``rate`` items/s with each busy ``busy`` of the time."""
    return math.ceil(rate / (mu * busy))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("urls", nargs="*", help="schedulers' and runners' /metrics URLs")
    ap.add_argument("--host", help="an inferq dev's gateway URL: use its roles' metrics")
    ap.add_argument("--rate", type=float, help="target items/s (λ)")
    ap.add_argument("--busy", type=float, default=0.7, help="busy ratio to plan for (rho)")
    args = ap.parse_args(argv)
    totals = Totals()
    urls = args.urls + (list(dev_metrics_urls(args.host).values()) if args.host else [])
    if not urls:
        print("no metrics URLs (give them, or --host of an inferq dev)", file=sys.stderr)
        return 2
    for url in urls:
        if (why := check_loopback(url)) is not None:
            print(f"refused: {why}", file=sys.stderr)
            return 2
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                add(totals, r.read().decode())
        except OSError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    if totals.mu is None:
        print("no inference time in these URLs: include the runners' /metrics", file=sys.stderr)
        return 1
    print(f"{totals.batched_items:.0f} items in {totals.batches:.0f} batches "
          f"({totals.batched_items / max(1, totals.batches):.1f} per batch), "
          f"{totals.inference_s:.1f} s of inference on {totals.runners} runner(s): "
          f"μ = {totals.mu:.1f} items/s per fully busy runner")
    if args.rate:
        n = runners_needed(args.rate, totals.mu, args.busy)
        print(f"λ = {args.rate:g} items/s at busy {args.busy:g}: N = ceil({args.rate:g} / "
              f"({totals.mu:.1f} * {args.busy:g})) = {n} runners")
    return 0


if __name__ == "__main__":
    sys.exit(main())
