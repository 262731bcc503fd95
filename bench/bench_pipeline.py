"""The control plane at accelerator speed: the ``inferq dev`` topology on the simulated device.

Starts gateway, scheduler and one runner (``--backend simulated``) as separate processes over
nats-server, redis-server and SQLite, as ``inferq dev`` does, and measures on real-length
English text (Python standard library docstrings), after a warm-up job (and the second the
schedulers take to read the runners' measured speed, from which they form work ahead):

- end-to-end items/s of N-item jobs (POST to terminal status, polled every 20 ms), each job
  alone;
- CPU microseconds per item of every process (gateway, scheduler, runner, nats-server,
  redis-server) over the job's window: where the pipeline spends its two cores;
- the simulated device's own rate on the same batches: items / its nominal time on them
  (``--batch-ms`` per batch + ``--token-us`` per padded token, from the batches and padded
  tokens the schedulers formed), and end to end as a fraction of it (= the busy ratio the
  device would have: how well the control plane keeps it fed). Also the time the runner
  measured around each run (``inferq_inference_seconds``): above nominal by what the runner
  process adds to a run (the token-derived vectors, a thread woken late on busy cores).

    python bench/bench_pipeline.py                          # zero-cost device: the ceiling
    python bench/bench_pipeline.py --batch-ms 2 --token-us 1  # a device with a cost per batch
    python bench/bench_pipeline.py --quick                  # 2,000 items, one job (CI-sized)
    python bench/bench_pipeline.py --cpu-shapes             # the CPU-tuned batch budget
    python bench/bench_pipeline.py --scale-out --batch-ms 20 --token-us 5  # 2+2 against 1+1

Batches are shaped for an accelerator by default: the model's files with a config whose
budget is 16,384 padded tokens and 256 rows per batch (a GPU takes batches far larger than
the CPU-tuned 2,048 tokens / 64 rows the default model ships with) over 14 coarse buckets
instead of the shipped 28 (where a batch's fixed cost dominates, fewer, fuller batches win;
``--buckets`` sets another list), in a temporary model repository; ``--cpu-shapes`` keeps the
shipped config. The scheduler tokenizes on every core
(``INFERQ_TOKENIZER_PARALLEL``, as ``inferq dev --backend simulated`` does) unless
``--sequential-tokenizer``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import COARSE_BUCKETS, texts_for
from bench.topology import KEYS, Topology, device_seconds, formed_totals, running, timed_job
from gpu_runner.backends.simulated import nominal_seconds
from gpu_runner.service import FIRST_MEASURE_S
from models.build import ensure_default_model
from scheduler.credit import POOL_REFRESH_S


@dataclass(frozen=True)
class Device:
    """The simulated device's cost: per batch, and per padded token."""

    batch_ms: float
    token_us: float


async def one_job(client: httpx.AsyncClient, body: dict, svc: Topology, device: Device,
                  profile_dir: Path | None = None) -> dict:
    """Run one job alone: wall time, device time (nominal and as the runners measured it) and
    CPU seconds per process over its window."""
    n = len(body["inputs"])
    ran0, formed0 = await device_seconds(svc.runner_ports), await formed_totals(svc.sched_ports)
    job = await timed_job(client, body, svc.pids, every=0.02, profile_dir=profile_dir)
    ran = await device_seconds(svc.runner_ports) - ran0
    batches, tokens = (a - b for a, b in zip(await formed_totals(svc.sched_ports), formed0,
                                             strict=True))
    nominal = nominal_seconds(device.batch_ms, device.token_us, batches=batches,
                              padded_tokens=tokens)
    runners = len(svc.runner_ports)
    return dict(wall=job.wall, accepted=job.accepted, rate=n / job.wall,
                device_rate=n * runners / nominal if nominal else float("inf"),
                ran_rate=n * runners / ran if ran else float("inf"),
                busy=nominal / job.wall / runners,
                cpu_us={k: v / n * 1e6 for k, v in job.cpu.items()})


async def measure(svc: Topology, texts: list[str], jobs: int, device: Device,
                  profile_dir: Path | None) -> list[dict]:
    """A warm-up job, then ``jobs`` measured ones."""
    body = {"model": "minilm", "inputs": [{"text": t} for t in texts]}
    async with httpx.AsyncClient(base_url=svc.url, timeout=300, headers={
            "Authorization": f"Bearer {KEYS['big']}"}) as client:
        warm = {"model": "minilm", "inputs": body["inputs"][:1000]}
        await one_job(client, warm, svc, device)
        # A warm runner has reported its measured speed (FIRST_MEASURE_S after its first
        # batch); the schedulers read it at most POOL_REFRESH_S later and form work ahead.
        await asyncio.sleep(FIRST_MEASURE_S + POOL_REFRESH_S)
        return [await one_job(client, body, svc, device, profile_dir if k == 0 else None)
                for k in range(jobs)]


def report(runs: list[dict], n: int, device: Device) -> float:
    """Per job and the median: items/s, the device's own rate (per runner), busy ratio,
    CPU-µs per item; returns the median items/s."""
    print(f"\nsimulated device: {device.batch_ms} ms per batch + {device.token_us} µs per "
          f"padded token; {n}-item jobs")
    costs = device.batch_ms > 0 or device.token_us > 0
    for k, r in enumerate(runs, 1):
        line = (f"job {k}: {r['rate']:7.0f} items/s end to end ({r['wall']:.2f} s, 202 after "
                f"{r['accepted'] * 1e3:.0f} ms); ")
        if costs:
            line += (f"device alone {r['device_rate']:9.0f} items/s (runs as timed in the "
                     f"runner: {r['ran_rate']:.0f}); end to end / device = busy ratio "
                     f"{r['busy']:.3f}")
        else:  # a zero-cost device has no rate of its own: the ceiling is the control plane's
            line += f"runs as timed in the runner: {r['ran_rate']:.0f} items/s"
        print(line)
    med = statistics.median(r["rate"] for r in runs)
    print(f"median end to end: {med:.0f} items/s" + (
        f"; median busy ratio {statistics.median(r['busy'] for r in runs):.3f}" if costs
        else ""))
    procs = list(runs[0]["cpu_us"])
    total = {p: statistics.median(r["cpu_us"][p] for r in runs) for p in procs}
    print("CPU µs per item (median): " + ", ".join(f"{p} {v:.0f}" for p, v in total.items())
          + f"; all {sum(total.values()):.0f}")
    return med


def accelerator_repo(src: Path, dst: Path, batch_tokens: int | None, batch_size: int | None,
                     buckets: list[int] | None = None) -> Path:
    """A model repository holding minilm@1's files (links) with an accelerator's batch budget
    and ``buckets`` in place of the model's (each where given)."""
    vdir = dst / "minilm" / "1"
    vdir.mkdir(parents=True)
    for f in (src / "minilm" / "1").iterdir():
        if f.name != "config.json":
            (vdir / f.name).symlink_to(f)
    cfg = json.loads((src / "minilm" / "1" / "config.json").read_text())
    given = {"max_batch_tokens": batch_tokens, "max_batch_size": batch_size, "buckets": buckets}
    cfg.update({k: v for k, v in given.items() if v})
    (vdir / "config.json").write_text(json.dumps(cfg, indent=2))
    return dst


def main() -> None:
    """Start the topology on the simulated device, measure, report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 items, one job")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=None, help="measured jobs (default 3)")
    ap.add_argument("--batch-ms", type=float, default=0.0)
    ap.add_argument("--token-us", type=float, default=0.0)
    ap.add_argument("--cpu-shapes", action="store_true",
                    help="keep the model's CPU-tuned batch budget (2,048 tokens / 64 rows)")
    ap.add_argument("--batch-tokens", type=int, default=16_384)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--buckets", type=int, nargs="+", default=None,
                    help="bucket list (the last must be 256); default: the 14 coarse buckets of "
                    "an accelerator-shaped config, or with --cpu-shapes the model's own")
    ap.add_argument("--sequential-tokenizer", action="store_true",
                    help="tokenize on one core (the default next to a CPU runner)")
    ap.add_argument("--scale-out", action="store_true",
                    help="also run two runners and two schedulers; print the ratio")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write py-spy raw stacks per role for the first job here")
    args = ap.parse_args()
    n = args.items or (2000 if args.quick else 10_000)
    jobs = args.jobs or (1 if args.quick else 3)
    texts = texts_for(n)
    repo = ensure_default_model().parents[1]
    if not args.cpu_shapes or args.buckets:
        budget = (None, None) if args.cpu_shapes else (args.batch_tokens, args.batch_size)
        buckets = args.buckets or (None if args.cpu_shapes else COARSE_BUCKETS)
        repo = accelerator_repo(repo, Path(tempfile.mkdtemp(prefix="inferq-bench-repo-")),
                                *budget, buckets)
    if not args.sequential_tokenizer:
        os.environ["INFERQ_TOKENIZER_PARALLEL"] = "1"
    device = Device(args.batch_ms, args.token_us)
    os.environ["INFERQ_SIM_BATCH_MS"] = str(args.batch_ms)
    os.environ["INFERQ_SIM_TOKEN_US"] = str(args.token_us)
    shapes = ("CPU-tuned model config" if args.cpu_shapes else
              f"accelerator batches: {args.batch_tokens} tokens / {args.batch_size} rows, "
              f"{len(args.buckets or COARSE_BUCKETS)} buckets")
    tokenizer = "one core" if args.sequential_tokenizer else "every core"
    print(f"{n} texts, mean {statistics.mean(len(t) for t in texts):.0f} chars; {shapes}; "
          f"scheduler tokenizes on {tokenizer}")
    shapes = [(1, 1), (2, 2)] if args.scale_out else [(1, 1)]
    rates = []
    for runners, schedulers in shapes:
        with running(repo, "simulated", runners=runners, schedulers=schedulers) as svc:
            runs = asyncio.run(measure(svc, texts, jobs, device, args.profile))
        print(f"\n== {runners} runner(s), {schedulers} scheduler(s)")
        rates.append(report(runs, n, device))
    if args.scale_out:
        print(f"\nscale-out: 2 runners + 2 schedulers / 1 + 1 = {rates[1] / rates[0]:.2f}x "
              "end to end (every job counted exactly once: succeeded == items)")


if __name__ == "__main__":
    main()
