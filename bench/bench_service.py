"""The running service against its backend, side by side in one run.

Starts the `inferq dev` topology (nats-server and redis-server from their wheels; gateway,
scheduler and one runner as separate processes; SQLite), then measures on real-length English
text (Python standard library docstrings):

- efficiency: end-to-end items/s of an N-item job (submit to terminal, nothing else running)
  divided by the backend's own items/s on the same texts, sorted by length and batched
  ideally, measured in the bench process right before and right after the job (the mean of
  the two; the backend as the service runs it, OpenVINO with one stream, and OpenVINO
  compiled for THROUGHPUT with two async requests over sorted batches of 32: the best of them
  is the baseline). The job runs 3 times, each between two baselines, so that drift in a
  shared machine's speed cancels; the median is reported, with min and max, each job's
  timeline, and each process's CPU seconds over the job's window;
- padding: padded tokens / real tokens of the batches the scheduler forms (its former replayed
  in arrival order) versus padding each arrival-order batch of 32 to its longest item;
- isolation: a 1-item interactive job's latency (p50/p95) while the same N-item job runs
  again (as many times as it takes to collect ``MIN_PROBES`` probes), versus idle (and that
  job's items/s with the probes alongside);
- batch-size distribution and runner busy ratio during the run;
- submit-to-202 latency p50/p99 for 1-item and 1,000-item jobs, and status polls per second.

    python bench/bench_service.py            # 10,000 items
    python bench/bench_service.py --quick    # 2,000 items, one efficiency job, fewer samples
    python bench/bench_service.py --profile /tmp/prof  # + py-spy stacks (pip install py-spy)

The topology lives in ``bench/topology.py``, the backend-alone baselines and the padding
comparison in ``bench/baselines.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import (
    alone_configs,
    backend_alone,
    openvino_throughput_alone,
    padding,
    texts_for,
)
from bench.topology import KEYS, device_seconds, running, scrape, timed_job, wait_done
from models.build import ensure_default_model
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer
from schemas.states import Priority

MIN_PROBES = 30
"""Interactive probes the isolation phase collects at least (the big job runs again until
then), so that its p95 is a measured figure, not the largest of five."""


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def one_item_latency(c: httpx.AsyncClient, text: str) -> float:
    """Seconds from submitting a 1-item interactive job to seeing it terminal."""
    t0 = time.perf_counter()
    r = await c.post("/v1/jobs", json={"model": "minilm", "priority": Priority.INTERACTIVE,
                                       "input": {"text": text}})
    await wait_done(c, r.json()["job_id"], 0.01)
    return time.perf_counter() - t0


async def efficiency_job(
    big: httpx.AsyncClient, body: dict, sched_port: int, runner_port: int,
    pids: dict[str, int], profile_dir: Path | None,
) -> dict:
    """One N-item job with nothing else running: its rate, timeline, batch sizes, the
    runner's busy ratio and each process's CPU seconds over its window."""
    n = len(body["inputs"])
    before = await scrape(sched_port, "inferq_batch_size_bucket")
    infer_before = await device_seconds((runner_port,))
    job = await timed_job(big, body, pids, every=0.1, profile_dir=profile_dir)
    wall, accepted, cpu, doc = job.wall, job.accepted, job.cpu, job.doc
    stamps = {k: datetime.fromisoformat(doc[k]).timestamp()
              for k in ("created_at", "started_at", "finished_at")}
    after = await scrape(sched_port, "inferq_batch_size_bucket")
    infer_after = await device_seconds((runner_port,))
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
    """Every measurement against the running service, in order: idle latency, submit
    latency, poll rate, the efficiency jobs between baselines, then isolation."""
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
        # 2. Isolation: the big job again, with 1-item interactive probes alongside; again
        #    until at least MIN_PROBES probes ran (a fast device finishes a job in ~2 s).
        under_load: list[float] = []

        async def probe() -> None:
            i = 0
            while True:
                under_load.append(await one_item_latency(small, texts[i % 50]))
                i += 1
                await asyncio.sleep(0.3)

        prober = asyncio.create_task(probe())
        rates = []
        while not rates or len(under_load) < MIN_PROBES:
            r = await big.post("/v1/jobs", json=big_body)
            r.raise_for_status()
            t0 = time.perf_counter()
            await wait_done(big, r.json()["job_id"], 0.2)
            rates.append(len(texts) / (time.perf_counter() - t0))
        prober.cancel()
        out["probed_rate"] = statistics.mean(rates)
        out["under_load"] = under_load
    return out


def main() -> None:
    """Baselines and padding first, then the service between more baselines, then a report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--backend", default=os.environ.get("INFERQ_BACKEND", "auto"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--streams", type=int, default=None,
                    help="OpenVINO streams (default: the backend's; 1 = one request, all threads)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="efficiency jobs, each between two baselines (default 3; --quick 1)")
    ap.add_argument("--no-throughput-baseline", action="store_true",
                    help="leave out OpenVINO THROUGHPUT with async requests (slow to compile)")
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
        f"padding (padded/real tokens): batches as the scheduler forms them {bucketed:.3f}, "
        f"arrival-order batches of 32 padded to longest {arrival:.3f}  -> ratio "
        f"{arrival / bucketed:.2f}x"
    )

    def baseline() -> dict[str, float]:
        rates = {
            label: backend_alone(args.backend, args.threads, streams, vdir, cfg, encoded)
            for label, streams in alone_configs(args).items()
        }
        if not args.no_throughput_baseline:
            rates["openvino THROUGHPUT async x2, sorted 32s"] = openvino_throughput_alone(
                vdir, encoded, threads=args.threads)
        return rates

    outside = baseline()
    print("backend alone (sorted, ideal batches), before the service starts: " + ", ".join(
        f"{label} {rate:.1f} items/s" for label, rate in outside.items()))

    with running(repo.root, args.backend, args.threads, args.streams) as svc:
        res = asyncio.run(service_run(svc.url, texts, args.quick, svc.sched_port,
                                      svc.runner_port, svc.pids, args.profile, args.repeats,
                                      baseline))
    report(res, n)


def report(res: dict, n: int) -> None:
    """Print the service's figures against the baselines."""
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
