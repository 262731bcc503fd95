"""CPU cost of span export per gateway request, measured in one process (no network noise).

    python bench/bench_otel.py [--requests 20000]

Each mode runs the gateway's per-request observation (``gateway.observe.Observed``: ids,
latency histogram, and the request's span) ``--requests`` times, then waits until every span
was posted, and reports the process's CPU time (all threads, the exporter's included) per
request:

- ``off``: no ``otlp_endpoint`` (the default): nothing recorded, the SDK never loaded;
- ``unsampled``: export on, ``otlp_sample_ratio=0``: each new trace decided "not sampled";
- ``sampled``: export on, ratio 1: every request a span, encoded to protobuf and POSTed in
  batches to a collector in this process that discards them (its own CPU is counted too, a
  few µs per span).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.bench_api import null_collector
from core import otel
from core.config import Settings
from gateway.observe import Observed

ROUTE = "/v1/jobs/{job_id:str}"


def requests(n: int) -> None:
    scope = {"type": "http", "method": "GET", "path": "/v1/jobs/x",
             "headers": [(b"authorization", b"Bearer k")]}
    for _ in range(n):
        seen = Observed(dict(scope))
        seen.done("GET", ROUTE, 200)


async def measure(mode: str, n: int, endpoint: str) -> float:
    """CPU µs per request in ``mode``."""
    settings = Settings(otlp_endpoint="" if mode == "off" else endpoint,
                        otlp_sample_ratio=0.0 if mode == "unsampled" else 1.0)
    installed = otel.install(settings)
    requests(200)  # warm up (the SDK's first span, the connection)
    if installed:
        otel.active().flush()
    c0 = time.process_time()
    for start in range(0, n, 4000):  # under the exporter's queue bound: no span dropped
        requests(min(4000, n - start))
        if installed:
            otel.active().flush(60)
    if installed:
        await otel.release()
    return (time.process_time() - c0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    server = null_collector()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    results: dict[str, list[float]] = {"off": [], "unsampled": [], "sampled": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(asyncio.run(measure(mode, args.requests, endpoint)))
    print(f"CPU per gateway request, {args.requests} requests x {args.rounds} rounds "
          f"(min of rounds; all threads):")
    base = min(results["off"])
    for mode, xs in results.items():
        print(f"  {mode:9s} {min(xs):7.1f} µs   (+{min(xs) - base:5.1f})   rounds: "
              + ", ".join(f"{x:.1f}" for x in xs))
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
