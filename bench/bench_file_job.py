"""A job from a file, end to end on the simulated device: upload time, time to 202, gateway
peak RSS (VmHWM) and end-to-end items/s.

Every role is its own process (gateway, scheduler, runner) on embedded nats-server and
redis-server, SQLite results, backend ``simulated`` (no model runs: what is measured is the
service around the device). ``--lines 1000000`` is the issue's figure.

    .venv/bin/python bench/bench_file_job.py --lines 100000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import free_port, nats_server, redis_server, terminate
from models.build import ensure_default_model

KEY = "bench-key-0123456789"


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lines(n: int):
    """``n`` JSONL lines of 8-40 words, in 1 MiB pieces (the upload streams them)."""
    words = "the quick brown fox jumps over the lazy dog while batch inference hums".split()
    buf: list[str] = []
    size = 0
    for i in range(n):
        text = " ".join(words[(i + k) % len(words)] for k in range(8 + i % 33))
        line = json.dumps({"text": f"{i} {text}", "id": f"r{i}"}) + "\n"
        buf.append(line)
        size += len(line)
        if size >= 1 << 20:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--runners", type=int, default=1)
    ap.add_argument("--sim-batch-ms", type=float, default=0.0)
    args = ap.parse_args()

    repo = ensure_default_model().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-file-job-"))
    nats = nats_server(tmp / "nats", log_path=tmp / "nats.log").start()
    redis = redis_server(tmp / "redis", log_path=tmp / "redis.log").start()
    tenants = tmp / "tenants.toml"
    write_tenants_file(tenants, {"bench": Tenant(
        name="bench", backlog_quota=10_000_000, items_per_min=1e9, api_key_sha256=[hash_key(KEY)])})
    port = free_port()
    env = dict(os.environ, INFERQ_NATS_URL=f"nats://{nats.host}:{nats.port}",
               INFERQ_REDIS_URL=f"redis://{redis.host}:{redis.port}/0",
               INFERQ_RESULTS_URL=f"sqlite:///{tmp / 'results.db'}",
               INFERQ_MODEL_REPO=str(repo), INFERQ_TENANTS_FILE=str(tenants),
               INFERQ_HTTP_PORT=str(port), INFERQ_BACKEND="simulated",
               INFERQ_SIM_BATCH_MS=str(args.sim_batch_ms), INFERQ_MODEL_BACKLOG_LIMIT="10000000",
               INFERQ_MAX_FILE_LINES=str(max(args.lines, 1_000_000)), INFERQ_LOG_LEVEL="WARNING",
               INFERQ_RUNNER_QUEUE_S="1.0")

    def role(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "inferq.cli", name], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.log", "ab"))

    procs = [role("gateway"), role("scheduler")] + [role("runner") for _ in range(args.runners)]
    gw = procs[0].pid
    try:
        c = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600,
                         headers={"Authorization": f"Bearer {KEY}"})
        for _ in range(600):
            try:
                if c.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        rss_idle = rss_mb(gw)
        t0 = time.perf_counter()
        r = c.post("/v1/files", content=lines(args.lines),
                   headers={"Content-Type": "application/x-ndjson"})
        r.raise_for_status()
        f = r.json()
        upload_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        r = c.post("/v1/jobs", json={"model": "minilm", "input_file_id": f["file_id"]})
        r.raise_for_status()
        to_202 = time.perf_counter() - t1
        job = r.json()["job_id"]
        while True:
            doc = c.get(f"/v1/jobs/{job}").json()
            if doc["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        e2e_s = time.perf_counter() - t1
        print(json.dumps({
            "lines": f["lines"], "file_mb": round(f["bytes"] / 2**20, 1),
            "upload_s": round(upload_s, 2), "time_to_202_ms": round(to_202 * 1000, 1),
            "end_to_end_s": round(e2e_s, 1), "items_per_s": round(f["lines"] / e2e_s),
            "status": doc["status"], "counts": doc["counts"],
            "gateway_rss_idle_mb": round(rss_idle, 1), "gateway_peak_rss_mb": round(
                peak_rss_mb(gw), 1), "runners": args.runners, "cpus": os.cpu_count()}, indent=1))
    finally:
        for p in reversed(procs):
            terminate(p)
        redis.stop()
        nats.stop()


if __name__ == "__main__":
    main()
