"""What keeping inline jobs' inputs for retries costs: submit latency and bytes kept per job.

    python bench/bench_kept_inputs.py [--rounds 3] [--submits 40] [--concurrency 4]

Two gateway processes on the same nats-server, redis-server and SQLite file, one with
``INFERQ_KEEP_INPUTS=true`` (the default: each inline job's inputs go to the files bucket as
one object, written while its chunks are published) and one with it off; rounds alternate
between them at 10, 1,000 and 10,000 items per job (no runner: jobs just queue). Printed:
submit p50/p99 for each, and the bytes the bucket's stream grew by per job kept, beside the
bytes the JOBS stream holds per job (the chunks, which JetStream keeps anyway until they are
consumed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import nats

from bench.bench_api import KEY, UNLIMITED, pct, start_gateway, submit_round
from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import nats_server, redis_server
from models.build import ensure_default_model

BUCKET_STREAM = "OBJ_inferq-files"
SIZES = (10, 1_000, 10_000)


async def stream_bytes(nats_url: str, name: str) -> tuple[int, int]:
    """(bytes, messages) the stream holds now; (0, 0) before it exists."""
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(name)
        return info.state.bytes, info.state.messages
    except nats.js.errors.NotFoundError:
        return 0, 0
    finally:
        await nc.close()


async def run(args: argparse.Namespace, gateways: dict[str, int], nats_url: str) -> None:
    host = "127.0.0.1"
    for port in gateways.values():  # warm up both (and create the bucket)
        await submit_round(host, port, False, 10, args.concurrency, 10)
    lat: dict[tuple[str, int], list[float]] = {(g, n): [] for g in gateways for n in SIZES}
    kept: dict[int, list[float]] = {n: [] for n in SIZES}
    chunks: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(args.rounds):
        for n in SIZES:
            submits = max(4, args.submits // (10 if n == 10_000 else 1))
            for name, port in gateways.items():
                b0, _ = await stream_bytes(nats_url, BUCKET_STREAM)
                j0, _ = await stream_bytes(nats_url, "JOBS")
                lat[name, n] += await submit_round(host, port, False, submits,
                                                   args.concurrency, n)
                b1, _ = await stream_bytes(nats_url, BUCKET_STREAM)
                j1, _ = await stream_bytes(nats_url, "JOBS")
                chunks[n].append((j1 - j0) / submits)
                if name == "keep on":
                    kept[n].append((b1 - b0) / submits)
                elif b1 != b0:
                    raise RuntimeError(f"keep off grew the bucket by {b1 - b0} bytes")
    print(f"submit latency and bytes kept, {args.concurrency} in flight, {args.rounds} rounds "
          "alternating between the gateways (no runner):")
    for n in SIZES:
        print(f"  {n:>6,} items/job")
        for name in gateways:
            xs = lat[name, n]
            print(f"    {name:8s}  p50 {pct(xs, 50) * 1000:7.1f} ms   p99 "
                  f"{pct(xs, 99) * 1000:7.1f} ms   (n={len(xs)})")
        on, off = lat["keep on", n], lat["keep off", n]
        print(f"    on / off  p50 {pct(on, 50) / pct(off, 50):.2f}x   p99 "
              f"{pct(on, 99) / pct(off, 99):.2f}x")
        print(f"    kept per job {statistics.median(kept[n]):>12,.0f} bytes   (JOBS stream "
              f"per job {statistics.median(chunks[n]):,.0f} bytes)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--submits", type=int, default=40, help="submits per gateway per round "
                    "(a tenth of it at 10,000 items)")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    repo = ensure_default_model().parent.parent
    with tempfile.TemporaryDirectory(prefix="inferq-bench-kept-") as tmp:
        t = Path(tmp)
        nats_proc = nats_server(t / "nats", log_path=t / "nats.log").start()
        redis_proc = redis_server(t / "redis", log_path=t / "redis.log", persist=False).start()
        tenants = t / "tenants.toml"
        write_tenants_file(tenants, {"bench": Tenant(name="bench", api_key_sha256=[hash_key(KEY)],
                                                     **UNLIMITED)})
        nats_url = f"nats://127.0.0.1:{nats_proc.port}"
        env = {**os.environ, "INFERQ_NATS_URL": nats_url,
               "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis_proc.port}/0",
               "INFERQ_RESULTS_URL": f"sqlite:///{t / 'results.db'}",
               "INFERQ_MODEL_REPO": str(repo), "INFERQ_TENANTS_FILE": str(tenants),
               "INFERQ_MODEL_BACKLOG_LIMIT": str(10**12)}
        procs = []
        try:
            gateways = {}
            for name, keep in (("keep on", "true"), ("keep off", "false")):
                gw, port = start_gateway(t, name.replace(" ", "-"),
                                         {**env, "INFERQ_KEEP_INPUTS": keep})
                procs.append(gw)
                gateways[name] = port
            print(f"cpu: {os.cpu_count()} cores\n")
            asyncio.run(run(args, gateways, nats_url))
        finally:
            for gw in procs:
                gw.terminate()
                gw.wait(30)
            redis_proc.stop()
            nats_proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
