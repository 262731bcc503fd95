"""The running service against its backend, side by side in one run.

Starts the `inferq dev` topology (nats-server and redis-server from their wheels; gateway,
scheduler and one runner as separate processes; SQLite), then measures on real-length English
text (Python standard library docstrings):

- efficiency: end-to-end items/s of an N-item job (submit to terminal, nothing else running)
  divided by the backend's own items/s on the same texts, sorted by length and batched
  ideally, measured in the bench process right before and right after the job (the mean of
  the two; OpenVINO both as the service runs it and with one stream, and the better of the two
  is the baseline). The job runs 3 times, each between two baselines, so that drift in a
  shared machine's speed cancels; the median is reported, with min and max, each job's
  timeline, and each process's CPU seconds over the job's window;
- padding: padded tokens / real tokens with the scheduler's bucketing versus padding each
  arrival-order batch of 32 to its longest item;
- isolation: a 1-item interactive job's latency (p50/p95) while the same N-item job runs a
  second time, versus idle (and that job's items/s with the probes alongside);
- batch-size distribution and runner busy ratio during the run;
- submit-to-202 latency p50/p99 for 1-item and 1,000-item jobs, and status polls per second.

    python bench/bench_service.py            # 10,000 items
    python bench/bench_service.py --quick    # 2,000 items, one efficiency job, fewer samples
    python bench/bench_service.py --profile /tmp/prof  # + py-spy stacks (pip install py-spy)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.texts import stdlib_texts
from core.tenants import Tenant, hash_key, write_tenants_file
from gpu_runner.backends import create_backend
from inferq.embedded import free_port, nats_server, redis_server
from models.bucketing import pad_batch
from models.build import ensure_default_model
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer
from scheduler.former import BatchFormer, PendingItem

KEYS = {"big": "bench-key-big-000000", "small": "bench-key-small-00000"}


def texts_for(n: int) -> list[str]:
    out: list[str] = []
    seed = 0
    while len(out) < n:
        out += stdlib_texts(n - len(out), seed=seed)
        seed += 1
    return out[:n]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def ideal_batches(lengths_ids: list[list[int]], cfg) -> list[tuple[int, list[list[int]]]]:
    """Sorted by length, each bucket filled to its budget: the best the batcher could do."""
    former = BatchFormer(
        cfg.buckets,
        max_batch_tokens=cfg.max_batch_tokens,
        max_batch_size=cfg.max_batch_size,
        max_queue_delay={"batch": 0},
    )
    for i, ids in enumerate(sorted(lengths_ids, key=len)):
        former.add(PendingItem("j", i, ids, "batch", 0.0))
    return [(b.bucket, [it.token_ids for it in b.items]) for b in former.pop_ready(0.0, flush=True)]


def padding(encoded: list[list[int]], cfg) -> tuple[float, float]:
    """(bucketed, arrival-order-32-to-longest) padded/real token ratios."""
    real = sum(len(e) for e in encoded)
    former = BatchFormer(
        cfg.buckets,
        max_batch_tokens=cfg.max_batch_tokens,
        max_batch_size=cfg.max_batch_size,
        max_queue_delay={"batch": 0},
    )
    padded_bucketed = 0
    for i, ids in enumerate(encoded):  # arrival order, as the scheduler sees them
        former.add(PendingItem("j", i, ids, "batch", 0.0))
        padded_bucketed += sum(b.padded_tokens for b in former.pop_ready(0.0))
    padded_bucketed += sum(b.padded_tokens for b in former.pop_ready(0.0, flush=True))
    padded_arrival = sum(
        max(len(e) for e in encoded[i : i + 32]) * len(encoded[i : i + 32])
        for i in range(0, len(encoded), 32)
    )
    return padded_bucketed / real, padded_arrival / real


def backend_alone(
    kind: str, threads: int | None, streams: int | None, vdir: Path, cfg,
    encoded: list[list[int]],
) -> float:
    backend = create_backend(kind, vdir, cfg, threads=threads, streams=streams)
    backend.warmup()
    batches = [pad_batch(ids, bucket) for bucket, ids in ideal_batches(encoded, cfg)]
    t0 = time.perf_counter()
    for ids, mask in batches:
        backend.run(ids, mask)
    elapsed = time.perf_counter() - t0
    backend.close()
    return len(encoded) / elapsed


def alone_configs(args) -> dict[str, int | None]:
    """The backend as the service runs it, and OpenVINO with one stream: the better is the
    baseline."""
    configs = {f"streams={args.streams or 'default'}": args.streams}
    if args.streams != 1:
        configs["streams=1"] = 1
    return configs


async def wait_done(c: httpx.AsyncClient, job: str, poll: float) -> dict:
    while True:
        doc = (await c.get(f"/v1/jobs/{job}")).json()
        if doc["status"] in ("succeeded", "failed"):
            return doc
        await asyncio.sleep(poll)


async def one_item_latency(c: httpx.AsyncClient, text: str) -> float:
    t0 = time.perf_counter()
    r = await c.post(
        "/v1/jobs", json={"model": "minilm", "priority": "interactive", "input": {"text": text}}
    )
    await wait_done(c, r.json()["job_id"], 0.01)
    return time.perf_counter() - t0


async def scrape(port: int, name: str) -> dict[str, float]:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name)
    }


def _profile(pids: dict[str, int], out: Path) -> list[subprocess.Popen]:
    """py-spy (collapsed stacks) on each role for the window; stopped with SIGINT."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        subprocess.Popen(
            [spy, "record", "--format", "raw", "--nonblocking", "--threads", "-r", "50",
             "-p", str(pid), "-o", str(out / f"{role}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for role, pid in pids.items()
        if role in ("runner", "scheduler", "gateway")
    ]


async def efficiency_job(
    big: httpx.AsyncClient, body: dict, sched_port: int, runner_port: int,
    pids: dict[str, int], profile_dir: Path | None,
) -> dict:
    """One N-item job with nothing else running: its rate, timeline, batch sizes, the
    runner's busy ratio and each process's CPU seconds over its window."""
    n = len(body["inputs"])
    before = await scrape(sched_port, "inferq_batch_size_bucket")
    infer_before = sum((await scrape(runner_port, "inferq_inference_seconds_sum")).values())
    cpu_before = {k: _cpu_seconds(pid) for k, pid in pids.items()}
    spies = _profile(pids, profile_dir) if profile_dir else []
    t0 = time.perf_counter()
    r = await big.post("/v1/jobs", json=body)
    r.raise_for_status()
    accepted = time.perf_counter() - t0
    doc = await wait_done(big, r.json()["job_id"], 0.1)
    wall = time.perf_counter() - t0
    cpu = {k: _cpu_seconds(pid) - cpu_before[k] for k, pid in pids.items()}
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(30)
    assert doc["counts"]["succeeded"] == n, doc
    stamps = {k: datetime.fromisoformat(doc[k]).timestamp()
              for k in ("created_at", "started_at", "finished_at")}
    after = await scrape(sched_port, "inferq_batch_size_bucket")
    infer_after = sum((await scrape(runner_port, "inferq_inference_seconds_sum")).values())
    return dict(
        wall=wall,
        rate=n / wall,
        busy=(infer_after - infer_before) / wall,
        timeline=(accepted, stamps["started_at"] - stamps["created_at"],
                  stamps["finished_at"] - stamps["started_at"],
                  wall - (stamps["finished_at"] - stamps["created_at"])),
        batch_hist={k: after[k] - before.get(k, 0) for k in after},
        cpu=cpu,
    )


async def service_run(
    url: str, texts: list[str], quick: bool, sched_port: int, runner_port: int,
    pids: dict[str, int], profile_dir: Path | None, repeats: int, baseline,
) -> dict:
    big = httpx.AsyncClient(
        base_url=url, timeout=120, headers={"Authorization": f"Bearer {KEYS['big']}"}
    )
    small = httpx.AsyncClient(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {KEYS['small']}"}
    )
    out: dict = {}
    async with big, small:
        # Warm the path (first batches load lazily) before measuring anything.
        await one_item_latency(small, "warm up")
        out["idle_latency"] = [
            await one_item_latency(small, t) for t in texts[: 10 if quick else 30]
        ]
        one = {"model": "minilm", "input": {"text": texts[0]}}
        thousand = {"model": "minilm", "inputs": [{"text": t} for t in texts[:1000]]}
        lat1, lat1000, side = [], [], []
        for _ in range(20 if quick else 100):
            t0 = time.perf_counter()
            r = await small.post("/v1/jobs", json=one)
            lat1.append(time.perf_counter() - t0)
            side.append(r.raise_for_status().json()["job_id"])
        for _ in range(3 if quick else 10):
            t0 = time.perf_counter()
            r = await small.post("/v1/jobs", json=thousand)
            lat1000.append(time.perf_counter() - t0)
            side.append(r.raise_for_status().json()["job_id"])
        out["submit_1"], out["submit_1000"] = lat1, lat1000
        for job in side:  # the side jobs drain before the big one starts
            await wait_done(small, job, 0.2)
        # Status polls per second from one gateway (16 concurrent pollers, 3 s).
        job = (await small.post("/v1/jobs", json=one)).json()["job_id"]
        await wait_done(small, job, 0.05)
        polls = 0
        stop_at = time.perf_counter() + 3

        async def poller() -> None:
            nonlocal polls
            while time.perf_counter() < stop_at:
                (await small.get(f"/v1/jobs/{job}")).raise_for_status()
                polls += 1

        await asyncio.gather(*[poller() for _ in range(16)])
        out["polls_per_s"] = polls / 3
        big_body = {"model": "minilm", "inputs": [{"text": t} for t in texts]}
        # 1. Efficiency: the big job alone, `repeats` times, each between two measurements of
        #    the backend alone (service idle), so that drift in the machine's speed cancels.
        out["points"] = [await asyncio.to_thread(baseline)]
        out["runs"] = []
        for k in range(repeats):
            out["runs"].append(await efficiency_job(
                big, big_body, sched_port, runner_port, pids,
                profile_dir if k == 0 else None))
            out["points"].append(await asyncio.to_thread(baseline))
        # 2. Isolation: the big job again, with 1-item interactive probes alongside.
        r = await big.post("/v1/jobs", json=big_body)
        r.raise_for_status()
        big_job = r.json()["job_id"]
        under_load: list[float] = []

        async def probe() -> None:
            i = 0
            while True:
                under_load.append(await one_item_latency(small, texts[i % 50]))
                i += 1
                await asyncio.sleep(0.3)

        prober = asyncio.create_task(probe())
        t0 = time.perf_counter()
        await wait_done(big, big_job, 0.2)
        out["probed_rate"] = len(texts) / (time.perf_counter() - t0)
        prober.cancel()
        out["under_load"] = under_load
    return out


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_role(role: str, env: dict[str, str], logs: Path) -> subprocess.Popen:
    log = open(logs / f"{role}.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "inferq.cli", role], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--backend", default=os.environ.get("INFERQ_BACKEND", "auto"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--streams", type=int, default=None,
                    help="OpenVINO streams (default: the backend's; 1 = one request, all threads)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="efficiency jobs, each between two baselines (default 3; --quick 1)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write py-spy collapsed stacks per role for the efficiency job here")
    args = ap.parse_args()
    n = args.items or (2000 if args.quick else 10_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    texts = texts_for(n)
    vdir = ensure_default_model()
    repo = ModelRepository(vdir.parent.parent)
    cfg = repo.config("minilm", 1)
    tok = TextTokenizer.from_dir(vdir, cfg)
    encoded = [e.ids for e in tok.encode(texts) if isinstance(e, Encoded)]
    print(
        f"{n} texts, mean {statistics.mean(len(t) for t in texts):.0f} chars, "
        f"mean {statistics.mean(len(e) for e in encoded):.1f} tokens; backend {args.backend}"
    )
    bucketed, arrival = padding(encoded, cfg)
    print(
        f"padding (padded/real tokens): bucketed {bucketed:.3f}, arrival-order batches of 32 "
        f"padded to longest {arrival:.3f}  -> ratio {arrival / bucketed:.2f}x"
    )

    def baseline() -> dict[str, float]:
        return {
            label: backend_alone(args.backend, args.threads, streams, vdir, cfg, encoded)
            for label, streams in alone_configs(args).items()
        }

    outside = baseline()
    print("backend alone (sorted, ideal batches), before the service starts: " + ", ".join(
        f"{label} {rate:.1f} items/s" for label, rate in outside.items()))

    tmp = Path(tempfile.mkdtemp(prefix="inferq-bench-"))
    (tmp / "logs").mkdir()
    nats = nats_server(tmp / "nats", log_path=tmp / "logs" / "nats.log", sync_always=True).start()
    redis = redis_server(tmp / "redis", log_path=tmp / "logs" / "redis.log").start()
    tenants = tmp / "tenants.toml"
    write_tenants_file(
        tenants,
        {
            name: Tenant(
                name=name, api_key_sha256=[hash_key(k)], requests_per_s=10_000, polls_per_s=100_000
            )
            for name, k in KEYS.items()
        },
    )
    http_port, sched_port, runner_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        INFERQ_NATS_URL=f"nats://127.0.0.1:{nats.port}",
        INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
        INFERQ_RESULTS_URL=f"sqlite:///{tmp / 'results.db'}",
        INFERQ_MODEL_REPO=str(repo.root),
        INFERQ_TENANTS_FILE=str(tenants),
        INFERQ_HTTP_PORT=str(http_port),
        INFERQ_BACKEND=args.backend,
    )
    if args.threads:
        env["INFERQ_BACKEND_THREADS"] = str(args.threads)
    if args.streams:
        env["INFERQ_BACKEND_STREAMS"] = str(args.streams)
    procs = [
        start_role("runner", dict(env, INFERQ_METRICS_PORT=str(runner_port)), tmp / "logs"),
        start_role("scheduler", dict(env, INFERQ_METRICS_PORT=str(sched_port)), tmp / "logs"),
        start_role("gateway", env, tmp / "logs"),
    ]
    try:
        url = f"http://127.0.0.1:{http_port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        time.sleep(3)  # the runner warms up and registers
        pids = {role: p.pid for role, p in zip(("runner", "scheduler", "gateway"), procs,
                                                strict=True)}
        pids.update(nats=nats.proc.pid, redis=redis.proc.pid)
        res = asyncio.run(service_run(url, texts, args.quick, sched_port, runner_port, pids,
                                      args.profile, args.repeats, baseline))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(60)
        redis.stop()
        nats.stop()
    print("backend alone with the service up and idle, between the jobs: " + "; ".join(
        ", ".join(f"{label} {rate:.1f}" for label, rate in point.items())
        for point in res["points"]) + " items/s")
    effs = []
    for k, run in enumerate(res["runs"]):
        around = res["points"][k : k + 2]
        means = {label: statistics.mean(p[label] for p in around) for label in around[0]}
        best = max(means, key=means.__getitem__)
        effs.append(run["rate"] / means[best])
        print(f"job {k + 1}: {n} items in {run['wall']:.1f} s = {run['rate']:.1f} items/s; "
              f"backend alone around it {means[best]:.1f} ({best}) -> efficiency {effs[-1]:.3f}; "
              f"runner busy {run['busy']:.3f} of the wall time in inference")
        print("  timeline: 202 after {:.3f} s; first batch running {:.3f} s after the job was "
              "created; running {:.2f} s; the rest (submit, last poll) {:.3f} s".format(
                  *run["timeline"]))
        print("  CPU seconds per process: " + ", ".join(
            f"{role} {v:.1f}" for role, v in run["cpu"].items()) + f" ({os.cpu_count()} cores)")
    print(f"EFFICIENCY end-to-end / backend-alone: median {statistics.median(effs):.3f} of "
          f"{len(effs)} (min {min(effs):.3f}, max {max(effs):.3f})")
    idle, load = res["idle_latency"], res["under_load"]
    print(
        f"isolation: 1-item interactive latency idle p50 {pct(idle, 0.5) * 1e3:.0f} ms "
        f"p95 {pct(idle, 0.95) * 1e3:.0f} ms; during the big job p50 "
        f"{pct(load, 0.5) * 1e3:.0f} ms p95 {pct(load, 0.95) * 1e3:.0f} ms "
        f"({len(load)} probes) -> p50 ratio {pct(load, 0.5) / pct(idle, 0.5):.2f}x; "
        f"the big job ran at {res['probed_rate']:.1f} items/s with the probes"
    )
    by_le: dict[float, float] = {}
    for k, v in res["runs"][0]["batch_hist"].items():  # summed over the per-bucket series
        le = k.split('le="')[1].split('"')[0]
        le_f = float("inf") if le == "+Inf" else float(le)
        by_le[le_f] = by_le.get(le_f, 0.0) + v
    hist = sorted(by_le.items())
    prev, dist = 0.0, []
    for le, cum in hist:
        if cum - prev > 0:
            dist.append(f"<={le:g}: {int(cum - prev)}")
        prev = cum
    print("batch sizes during job 1: " + ", ".join(dist))
    s1, s1k = res["submit_1"], res["submit_1000"]
    print(
        f"submit-to-202: 1 item p50 {pct(s1, 0.5) * 1e3:.1f} ms p99 {pct(s1, 0.99) * 1e3:.1f} ms;"
        f" 1,000 items p50 {pct(s1k, 0.5) * 1e3:.1f} ms p99 {pct(s1k, 0.99) * 1e3:.1f} ms"
    )
    print(f"status polls: {res['polls_per_s']:.0f}/s from one gateway process (16 pollers)")


if __name__ == "__main__":
    main()
