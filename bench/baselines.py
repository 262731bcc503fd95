"""What the service is measured against: the backend alone, fed the best batches the batcher
could form, and the padding those batches cost versus naive arrival-order batches.

Shared by ``bench_service.py`` (efficiency = service rate / backend-alone rate) and
``bench_contention.py``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.texts import stdlib_texts
from gpu_runner.backends import create_backend
from gpu_runner.backends.base import Backend
from gpu_runner.infer import padded_width
from models.bucketing import pad_batch
from models.config import ModelConfig
from scheduler.former import BatchFormer, PendingItem
from scheduler.pipes import HOLD_BATCHES
from schemas.states import Priority

COARSE_BUCKETS = [8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256]
"""The model's default buckets until 2026-11-30, kept for accelerator-shaped configs: where a
batch's fixed cost dominates (a GPU, the simulated device), fewer buckets mean fuller batches
and fewer of them; on a CPU, whose time grows with every padded token, the finer default pays
(docs/models.md)."""


def texts_for(n: int) -> list[str]:
    """``n`` real English texts (stdlib docstrings), drawing further seeds as needed."""
    out: list[str] = []
    seed = 0
    while len(out) < n:
        out += stdlib_texts(n - len(out), seed=seed)
        seed += 1
    return out[:n]


def _former(cfg: ModelConfig, buckets: list[int] | None = None,
            delay: float = 0.0) -> BatchFormer:
    """The scheduler's batch former on ``buckets`` (default: the model's); batch priority
    fires after ``delay`` (0: at once)."""
    return BatchFormer(
        buckets or cfg.buckets,
        max_batch_tokens=cfg.max_batch_tokens,
        max_batch_size=cfg.max_batch_size,
        max_queue_delay={Priority.BATCH: delay},
    )


def ideal_batches(lengths_ids: list[list[int]],
                  cfg: ModelConfig) -> list[tuple[int, list[list[int]]]]:
    """Sorted by length, each bucket filled to its budget: the best the batcher could do."""
    former = _former(cfg)
    for i, ids in enumerate(sorted(lengths_ids, key=len)):
        former.add(PendingItem("j", i, ids, Priority.BATCH, 0.0))
    return [(b.bucket, [it.token_ids for it in b.items]) for b in former.pop_ready(0.0, flush=True)]


Batch = tuple[int, list[list[int]]]
"""A formed batch: its bucket and its rows' token ids."""


def formed_batches(encoded: list[list[int]], cfg: ModelConfig,
                   buckets: list[int] | None = None) -> list[Batch]:
    """The batches the scheduler's former makes of ``encoded`` in arrival order on ``buckets``
    (default: the model's), holding at most ``HOLD_BATCHES`` of the largest batch, as a
    scheduler whose runners keep asking does: full buckets first, else the fullest one."""
    former = _former(cfg, buckets, delay=float("inf"))
    hold = HOLD_BATCHES * cfg.max_batch_size
    items = iter(enumerate(encoded))
    out: list[Batch] = []
    done = False
    while True:
        while len(former) < hold and not done:
            nxt = next(items, None)
            if nxt is None:
                done = True
            else:
                former.add(PendingItem("job", nxt[0], nxt[1], Priority.BATCH, 0.0))
        fired = former.pop_ready(0.0, limit=1, hungry=True, flush=done)
        if not fired:
            return out
        out += [(b.bucket, [item.token_ids for item in b.items]) for b in fired]


def batch_padding(batches: list[Batch]) -> float:
    """Padded tokens (each batch as a dynamic-shape runner pads it) per real token."""
    real = sum(len(row) for _, rows in batches for row in rows)
    return sum(padded_width(rows, bucket) * len(rows) for bucket, rows in batches) / real


def padding(encoded: list[list[int]], cfg: ModelConfig) -> tuple[float, float]:
    """(batches as the scheduler forms them, arrival-order-32-to-longest) padded/real token
    ratios."""
    real = sum(len(e) for e in encoded)
    padded_arrival = sum(
        max(len(e) for e in encoded[i : i + 32]) * len(encoded[i : i + 32])
        for i in range(0, len(encoded), 32)
    )
    return batch_padding(formed_batches(encoded, cfg)), padded_arrival / real


def one_by_one(backend: Backend, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Each batch on the whole device, one after another."""
    for ids, mask in batches:
        backend.run(ids, mask)


def side_by_side(backend: Backend, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """``concurrency`` batches in flight, each whole on its own share of the device: how a
    runner with work backing up drives a backend that runs batches side by side."""
    with ThreadPoolExecutor(backend.concurrency) as pool:
        for _ in pool.map(lambda b: backend.run(*b, shared=True), batches):
            pass


def backend_alone(
    kind: str, threads: int | None, streams: int | None, vdir: Path, cfg: ModelConfig,
    encoded: list[list[int]],
) -> float:
    """Items/s of the backend alone over ideal batches of ``encoded`` (warmed up first),
    padded and run as a busy runner does (``padded_width`` on a dynamic-shape runtime; side
    by side where the backend can)."""
    backend = create_backend(kind, vdir, cfg, threads=threads, streams=streams)
    backend.warmup()
    exact = backend.supported_shapes().exact or backend.simulated
    batches = [pad_batch(ids, bucket if exact else padded_width(ids, bucket))
               for bucket, ids in ideal_batches(encoded, cfg)]
    t0 = time.perf_counter()
    (side_by_side if backend.concurrency > 1 else one_by_one)(backend, batches)
    elapsed = time.perf_counter() - t0
    backend.close()
    return len(encoded) / elapsed


def openvino_throughput_alone(vdir: Path, encoded: list[list[int]], *, batch: int = 32,
                              requests: int = 2, threads: int | None = None) -> float:
    """Items/s of OpenVINO compiled for throughput (f32, ``PERFORMANCE_HINT=THROUGHPUT``),
    ``requests`` infer requests in flight through an ``AsyncInferQueue``, over batches of
    ``batch`` texts sorted by length, each padded to its longest (warmed up first): the
    strongest plain use of the runtime we know on a CPU, and no batcher of ours involved."""
    import openvino as ov

    core = ov.Core()
    props = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        props["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(vdir / "model.onnx"), "CPU", props)
    names = [i.get_any_name() for i in compiled.inputs]
    ids_name = next(n for n in names if "input_ids" in n)
    mask_name = next(n for n in names if "attention_mask" in n)
    extra = [n for n in names if n not in (ids_name, mask_name)]
    rows = sorted(encoded, key=len)
    feeds = []
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        width = max(len(r) for r in chunk)
        ids = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for k, r in enumerate(chunk):
            ids[k, :len(r)] = r
            mask[k, :len(r)] = 1
        feed = {ids_name: ids, mask_name: mask}
        for n in extra:  # token_type_ids
            feed[n] = np.zeros_like(ids)
        feeds.append(feed)
    queue = ov.AsyncInferQueue(compiled, requests)
    for feed in feeds[:requests * 2]:  # warm-up
        queue.start_async(feed)
    queue.wait_all()
    t0 = time.perf_counter()
    for feed in feeds:
        queue.start_async(feed)
    queue.wait_all()
    return len(encoded) / (time.perf_counter() - t0)


def alone_configs(args: argparse.Namespace) -> dict[str, int | None]:
    """The backend as the service runs it, and OpenVINO with one stream: the better is the
    baseline."""
    configs = {f"streams={args.streams or 'default'}": args.streams}
    if args.streams != 1:
        configs["streams=1"] = 1
    return configs
