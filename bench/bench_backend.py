"""Benchmark the model backends alone (no queue, no bus): items/s per shape and on real text.

    /work/venv/bin/python bench/bench_backend.py [--quick] [--threads N]

1. A grid of batch sizes x sequence lengths per backend (median of several timed runs).
2. ~2,000 real English texts (stdlib docstrings, bench/texts.py) embedded in arrival-order
   batches of 32 padded to their longest item versus length-bucketed batches within the token
   budget, with the padding ratio (padded tokens / real tokens) of each.
3. Ratios in the same run: what ORT_ENABLE_ALL gains over ORT_ENABLE_BASIC, OpenVINO bf16
   over f32, OpenVINO f32 over ONNX Runtime, and bucketing over arrival order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench.texts import stdlib_texts
from gpu_runner.backends import (
    Backend,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    cpu_supports_bf16,
)
from models.bucketing import bucket_for, pad_batch
from models.build import ensure_default_model
from models.config import ModelConfig
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer


def interleaved_rates(
    backends: dict[str, Backend], work: Callable[[Backend], int], runs: int, min_time: float
) -> dict[str, float]:
    """Median items/s of ``work`` per backend, the backends taking turns run by run.

    Taking turns spreads any load from other processes evenly over the backends, so the
    ratios between them stay meaningful on a shared machine.
    """
    for b in backends.values():
        work(b)  # warm this shape
    rates: dict[str, list[float]] = {name: [] for name in backends}
    start = time.perf_counter()
    while min(map(len, rates.values())) < runs or time.perf_counter() - start < min_time:
        for name, b in backends.items():
            t0 = time.perf_counter()
            n = work(b)
            rates[name].append(n / (time.perf_counter() - t0))
    return {name: statistics.median(r) for name, r in rates.items()}


def grid(
    backends: dict[str, Backend], batches: list[int], seqs: list[int], runs: int
) -> dict[str, dict[tuple[int, int], float]]:
    rng = np.random.default_rng(0)
    out: dict[str, dict[tuple[int, int], float]] = {name: {} for name in backends}
    for seq in seqs:
        for batch in batches:
            ids = rng.integers(1000, 29000, size=(batch, seq), dtype=np.int64)
            ids[:, 0], ids[:, -1] = 101, 102
            mask = np.ones_like(ids)

            def once(b: Backend, ids: np.ndarray = ids, mask: np.ndarray = mask) -> int:
                return len(b.run(ids, mask))

            for name, rate in interleaved_rates(backends, once, runs, 1.0).items():
                out[name][(batch, seq)] = rate
    return out


def arrival_batches(encoded: list[Encoded], size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches of ``size`` in arrival order, each padded to its own longest item."""
    batches = []
    for i in range(0, len(encoded), size):
        rows = [e.ids for e in encoded[i : i + size]]
        batches.append(pad_batch(rows, max(map(len, rows))))
    return batches


def bucketed_batches(
    encoded: list[Encoded], config: ModelConfig
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group by bucket, then cut each bucket into batches within the padded-token budget."""
    by_bucket: dict[int, list[list[int]]] = {}
    for e in encoded:
        by_bucket.setdefault(bucket_for(e.length, config.buckets), []).append(e.ids)
    batches = []
    for bucket, rows in sorted(by_bucket.items()):
        step = config.max_batch_for(bucket)
        batches += [pad_batch(rows[i : i + step], bucket) for i in range(0, len(rows), step)]
    return batches


def padding_of(batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    return sum(m.size for _, m in batches) / sum(int(m.sum()) for _, m in batches)


def mix_rates(
    backends: dict[str, Backend], batches: list[tuple[np.ndarray, np.ndarray]], runs: int
) -> dict[str, float]:
    items = sum(len(ids) for ids, _ in batches)

    def one_pass(b: Backend) -> int:
        for ids, mask in batches:
            b.run(ids, mask)
        return items

    return interleaved_rates(backends, one_pass, runs, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes, texts and runs")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads (default: all)")
    args = parser.parse_args()

    version_dir = ensure_default_model()
    config = ModelRepository(version_dir.parents[1]).config("minilm", 1)
    batches = [1, 8, 32] if args.quick else [1, 8, 32, 64, 128]
    seqs = [16, 128] if args.quick else [16, 64, 128, 256]
    runs = 3 if args.quick else 5
    n_texts = 600 if args.quick else 2000

    backends: dict[str, Backend] = {
        "ort-basic": OnnxRuntimeBackend(
            version_dir, config, threads=args.threads, optimization="basic"
        ),
        "ort-all": OnnxRuntimeBackend(version_dir, config, threads=args.threads),
        "ov-f32": OpenVinoBackend(version_dir, config, threads=args.threads, precision="fp32"),
    }
    if cpu_supports_bf16():
        backends["ov-bf16"] = OpenVinoBackend(
            version_dir, config, threads=args.threads, precision="bf16"
        )
    for b in backends.values():
        b.load()
        b.warmup()

    print(
        f"# backends alone: {os.cpu_count()} CPUs, threads={args.threads or 'all'}, "
        f"{'quick' if args.quick else 'full'} mode, backends taking turns, median of >= {runs} runs"
    )
    print("\n## items/s by batch x sequence length")
    results = grid(backends, batches, seqs, runs)
    names = list(backends)
    print(f"{'batch':>5} {'seq':>4} " + " ".join(f"{n:>10}" for n in names))
    for seq in seqs:
        for batch in batches:
            print(
                f"{batch:>5} {seq:>4} "
                + " ".join(f"{results[n][(batch, seq)]:>10.1f}" for n in names)
            )

    tokenizer = TextTokenizer.from_dir(version_dir, config)
    texts = stdlib_texts(n_texts)
    encoded = [e for e in tokenizer.encode(texts) if isinstance(e, Encoded)]
    lengths = np.array([e.length for e in encoded])
    arrival, bucketed = arrival_batches(encoded, 32), bucketed_batches(encoded, config)
    print(
        f"\n## {len(encoded)} stdlib docstring texts: tokens p50={np.median(lengths):.0f} "
        f"p90={np.percentile(lengths, 90):.0f} max={lengths.max()}, mean={lengths.mean():.1f}"
    )
    print(
        f"padding ratio (padded/real tokens): arrival-order x32 = {padding_of(arrival):.2f}, "
        f"bucketed within {config.max_batch_tokens} tokens = {padding_of(bucketed):.2f}"
    )
    mix_runs = 2 if args.quick else 3
    by_arrival = mix_rates(backends, arrival, mix_runs)
    by_bucket = mix_rates(backends, bucketed, mix_runs)
    mix = {name: (by_arrival[name], by_bucket[name]) for name in backends}
    print(f"{'backend':>10} {'arrival/s':>10} {'bucketed/s':>11} {'gain':>6}")
    for name, (a, k) in mix.items():
        print(f"{name:>10} {a:>10.1f} {k:>11.1f} {k / a:>5.2f}x")

    print("\n## ratios (same run)")
    ref = (32, 128)

    def ratio(num: str, den: str) -> None:
        if num in backends and den in backends:
            g = results[num][ref] / results[den][ref]
            m = mix[num][1] / mix[den][1]
            print(f"{num} / {den}: {g:.2f}x at batch 32 x seq 128, {m:.2f}x on bucketed real text")

    ratio("ort-all", "ort-basic")
    ratio("ov-f32", "ort-all")
    ratio("ov-bf16", "ov-f32")
    ratio("ov-bf16", "ort-all")
    for b in backends.values():
        b.close()


if __name__ == "__main__":
    main()
