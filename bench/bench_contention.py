"""The backend alone, with and without a little unrelated CPU work beside it, side by side.

Why the service's efficiency on a small machine depends on how inference uses its threads:
one multi-threaded inference pass waits at each layer for its slowest thread, so a neighbour
that takes a core for a few milliseconds stalls all of them. This measures it: ideal
(length-sorted, bucketed) batches of real text, with a neighbour process that burns a given
fraction of one core in 1 ms slices (roughly how the scheduler, NATS, Redis and the gateway
wake up), for the backend's streams running two whole batches side by side (how a runner with
work backing up drives it), its default alone (OpenVINO: large batches split between two
streams), one stream on all threads, and one thread.

    python bench/bench_contention.py            # 3,000 texts, neighbours 0, 0.15, 0.33, 0.6 core
    python bench/bench_contention.py --items 1000 --loads 0 0.33
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import ideal_batches, one_by_one, side_by_side, texts_for
from gpu_runner.backends import create_backend
from gpu_runner.infer import padded_width
from models.bucketing import pad_batch
from models.build import ensure_default_model
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer


def neighbour(load: float, stop) -> None:
    """Burn ``load`` of one core: busy for load/(1-load) ms, then sleep 1 ms, repeatedly."""
    busy = 0.001 * load / (1 - load)
    while not stop.is_set():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < busy:
            pass
        time.sleep(0.001)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--loads", type=float, nargs="+", default=[0.0, 0.15, 0.33, 0.6])
    args = ap.parse_args()
    vdir = ensure_default_model()
    cfg = ModelRepository(vdir.parent.parent).config("minilm", 1)
    tok = TextTokenizer.from_dir(vdir, cfg)
    texts = texts_for(args.items)
    encoded = [e.ids for e in tok.encode(texts) if isinstance(e, Encoded)]
    # Padded as a runner pads for a dynamic-shape runtime: to the longest row, rounded to 8.
    batches = [pad_batch(ids, padded_width(ids, bucket))
               for bucket, ids in ideal_batches(encoded, cfg)]
    configs = {"side by side": (None, None, side_by_side), "default": (None, None, one_by_one),
               "one stream": (None, 1, one_by_one), "one thread": (1, 1, one_by_one)}
    for name, (threads, streams, run_all) in configs.items():
        backend = create_backend(args.backend, vdir, cfg, threads=threads, streams=streams)
        if run_all is side_by_side and backend.concurrency < 2:
            backend.close()  # runs one batch at a time: nothing to put side by side
            continue
        backend.warmup()
        base = None
        for load in args.loads:
            stop = mp.Event()
            proc = mp.Process(target=neighbour, args=(load, stop)) if load > 0 else None
            if proc:
                proc.start()
                time.sleep(0.2)
            t0 = time.perf_counter()
            run_all(backend, batches)
            rate = len(encoded) / (time.perf_counter() - t0)
            stop.set()
            if proc:
                proc.join()
            base = base or rate
            print(f"{backend.label} {name}: neighbour {load:.2f} core "
                  f"-> {rate:7.1f} items/s ({rate / base:.2f}x of no neighbour)", flush=True)
        backend.close()


if __name__ == "__main__":
    main()
