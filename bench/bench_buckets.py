"""What the bucket list costs: padding and backend time of batches formed as the scheduler forms
them, for the model's buckets against another list, measured side by side in one run.

The scheduler groups items by bucket in arrival order and fires a bucket when it is full (or,
when the runners are hungry and it holds all it may, the fullest partial one); a dynamic-shape
runtime then pads each batch to its longest row (``padded_width``). Finer buckets leave less
padding inside a batch; this replays a real-text job through the real ``BatchFormer`` under the
scheduler's hold limit for each list, and runs the resulting batches through the backend as a
busy runner does (side by side where it can), the lists alternating round by round.

    python bench/bench_buckets.py                  # 10,000 texts, 3 rounds
    python bench/bench_buckets.py --quick          # 2,000 texts, 1 round
    python bench/bench_buckets.py --other 8 16 32 64 128 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import (
    COARSE_BUCKETS,
    batch_padding,
    formed_batches,
    one_by_one,
    side_by_side,
    texts_for,
)
from gpu_runner.backends import create_backend
from gpu_runner.infer import padded_width
from models.bucketing import pad_batch
from models.build import ensure_default_model
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--other", type=int, nargs="+", default=COARSE_BUCKETS,
                    help="the bucket list to compare with (default: the 14 of before)")
    args = ap.parse_args()
    n = args.items or (2000 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 3)
    vdir = ensure_default_model()
    cfg = ModelRepository(vdir.parent.parent).config("minilm", 1)
    tok = TextTokenizer.from_dir(vdir, cfg)
    encoded = [e.ids for e in tok.encode(texts_for(n)) if isinstance(e, Encoded)]
    lists = {f"model's {len(cfg.buckets)}": cfg.buckets, f"other {len(args.other)}": args.other}
    backend = create_backend(args.backend, vdir, cfg)
    backend.warmup()
    run = side_by_side if backend.concurrency > 1 else one_by_one
    padded = {}
    for label, buckets in lists.items():
        batches = formed_batches(encoded, cfg, buckets)
        padded[label] = [pad_batch(rows, padded_width(rows, bucket)) for bucket, rows in batches]
        print(f"{label} buckets: {len(batches)} batches, mean {n / len(batches):.1f} rows, "
              f"padding {batch_padding(batches):.3f} padded tokens per real one")
    rates: dict[str, list[float]] = {label: [] for label in lists}
    for r in range(rounds):
        for label in (lists if r % 2 == 0 else reversed(lists)):
            t0 = time.perf_counter()
            run(backend, padded[label])
            rates[label].append(len(encoded) / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} items/s" for k, v in rates.items()))
    first, second = lists
    ratios = [a / b for a, b in zip(rates[first], rates[second], strict=True)]
    print(f"{backend.label}: {first} / {second} buckets, backend rate: median "
          f"{statistics.median(ratios):.3f} over {rounds} round(s) "
          f"({', '.join(f'{x:.3f}' for x in ratios)})")
    backend.close()


if __name__ == "__main__":
    main()
