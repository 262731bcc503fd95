"""The runner's write-back into the result store: items/s into Cassandra against SQLite, on the
same batches, in one run.

After an untimed warm-up (the JVM's JIT), every round writes the same batches — rows as the
runner makes them (a packed 384-d float32 embedding, 1,545 bytes, or every tenth one a
failure) for jobs of ``--job-items`` items — with
``upsert_items`` (the write-back's step 1), ``--concurrency`` batches in flight at once (one
per runner pipeline). Cassandra is a live Apache Cassandra 5 node started here from
``scripts/fetch_cassandra.sh``'s cache (or ``--cassandra-url``); SQLite is a file in a
temporary folder, as ``inferq dev`` uses it (WAL, ``synchronous=FULL``). Beside items/s it
reports CPU per item of this process (the driver / sqlite3 calls) and of the Cassandra JVM,
which says what bounds each.

    python bench/bench_store.py            # 20,000 items; batches of 64 and 256; 1 and 4 in flight
    python bench/bench_store.py --quick    # 2,000 items, batches of 64, 1 and 4 in flight (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inferq.cassandra_node import cassandra_node, home_from, locate, start_node
from store.results import ItemRecord, JobRecord, ResultStore, SqliteResultStore, open_result_store
from store.results.codec import pack_embedding

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def make_batches(n: int, batch: int, job_items: int) -> tuple[list[JobRecord],
                                                               list[list[ItemRecord]]]:
    """Jobs of ``job_items`` items and their items cut into batches, as a runner sees them."""
    rng = np.random.default_rng(7)
    now = time.time()
    jobs = [JobRecord(uuid.uuid4().hex, "bench", "minilm", 1, "batch", job_items, 1, now,
                      now + 86400) for _ in range((n + job_items - 1) // job_items)]
    items = []
    for i in range(n):
        job = jobs[i // job_items]
        if i % 10 == 9:
            items.append(ItemRecord(job.job_id, i % job_items, "failed", 1,
                                    error_code="empty_text", error_message="text is empty",
                                    error_retryable=False, finished_at=now))
        else:
            vector = rng.standard_normal(384).astype(np.float32)
            items.append(ItemRecord(job.job_id, i % job_items, "succeeded", 1,
                                    client_id=f"c{i}", output=pack_embedding(vector, 12, False),
                                    finished_at=now))
    return jobs, [items[i:i + batch] for i in range(0, n, batch)]


async def write_back(store: ResultStore, jobs: list[JobRecord], batches: list[list[ItemRecord]],
                     concurrency: int, jvm_pid: int | None) -> dict:
    """Create the jobs (not timed), then upsert every batch, ``concurrency`` at a time."""
    for job in jobs:
        await store.create_job(job)
    queue = list(reversed(batches))

    async def worker() -> None:
        while queue:
            await store.upsert_items(queue.pop())

    n = sum(len(b) for b in batches)
    cpu0, jvm0, t0 = time.process_time(), proc_cpu(jvm_pid) if jvm_pid else 0.0, time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    jvm = (proc_cpu(jvm_pid) - jvm0) if jvm_pid else None
    return dict(rate=n / wall, wall=wall, client_us=cpu / n * 1e6,
                server_us=jvm / n * 1e6 if jvm is not None else None)


async def run(args: argparse.Namespace, cassandra_url: str, jvm_pid: int | None,
              folder: Path) -> list[dict]:
    rows = []
    for name in ("sqlite", "cassandra"):  # warm-up: the JVM's JIT, the driver's prepares
        jobs, batches = make_batches(args.warmup, args.batch[0], args.job_items)
        store = SqliteResultStore(folder / "warm.db") if name == "sqlite" \
            else open_result_store(cassandra_url)
        await store.migrate()
        await write_back(store, jobs, batches, max(args.concurrency), None)
        await store.close()
    for batch in args.batch:
        for concurrency in args.concurrency:
            for name in ("sqlite", "cassandra"):
                jobs, batches = make_batches(args.items, batch, args.job_items)  # fresh ids
                if name == "sqlite":
                    store: ResultStore = SqliteResultStore(folder / f"r-{uuid.uuid4().hex}.db")
                else:
                    store = open_result_store(cassandra_url)
                await store.migrate()
                try:
                    got = await write_back(store, jobs, batches, concurrency,
                                           jvm_pid if name == "cassandra" else None)
                finally:
                    await store.close()
                rows.append(dict(store=name, batch=batch, concurrency=concurrency, **got))
                server = f"{got['server_us']:7.0f}" if got["server_us"] is not None else "      -"
                print(f"{name:9} batch {batch:4} x{concurrency}  {got['rate']:8.0f} items/s  "
                      f"client {got['client_us']:5.0f} us/item  server {server} us/item",
                      flush=True)
    return rows


def main() -> None:
    """Parse the options, start a Cassandra node unless given one, run every combination."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 items, batches of 64 (CI)")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--batch", type=int, nargs="+", default=None)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--warmup", type=int, default=2000, help="items written first, untimed")
    ap.add_argument("--job-items", type=int, default=2000,
                    help="items per job (two item buckets of 1,000 in Cassandra)")
    ap.add_argument("--cassandra-url", default=None,
                    help="a cluster of your own (its keyspace is created) instead of a local node")
    args = ap.parse_args()
    args.items = args.items or (2000 if args.quick else 20_000)
    args.batch = args.batch or ([64] if args.quick else [64, 256])
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        folder, node = Path(tmp), None
        url = args.cassandra_url
        if url is None:
            home = home_from(os.environ)
            java, _ = locate(home)
            t0 = time.perf_counter()
            node = start_node(cassandra_node(folder / "cassandra", home, java=java,
                                             heap_mb=1024, log_path=folder / "cassandra.log"))
            print(f"Cassandra node up in {time.perf_counter() - t0:.1f} s", flush=True)
            url = (f"cassandra://{node.host}:{node.port}/inferq_bench"
                   "?dc=datacenter1&replication=datacenter1:1")
        try:
            asyncio.run(run(args, url, node.proc.pid if node and node.proc else None, folder))
        finally:
            if node is not None:
                node.stop(grace=30.0)


if __name__ == "__main__":
    main()
