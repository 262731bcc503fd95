"""How wide a runner pads a batch: a dynamic-shape runtime gets the batch's longest row
(rounded up to a multiple of 8, never past the bucket), a fixed-shape engine and the simulated
device that stands in for one get the bucket; the embeddings do not change either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.config import Settings
from gpu_runner.backends import create_backend
from gpu_runner.busy import BusyMeter
from gpu_runner.infer import Inference, InferredTally, padded_width
from models.bucketing import pad_batch
from models.config import ModelConfig
from models.tokenize import Encoded, TextTokenizer
from schemas.bus import Batch, BatchItem


def test_the_width_is_the_longest_row_rounded_to_eight_at_most_the_bucket() -> None:
    assert padded_width([[1] * 3, [1] * 9], 24) == 16
    assert padded_width([[1] * 16], 24) == 16
    assert padded_width([[1] * 17, [1] * 2], 24) == 24
    assert padded_width([[1] * 10], 12) == 12  # rounding stops at the bucket


class NoLease:
    async def in_progress(self) -> None:  # a batch this short never asks
        raise AssertionError("unexpected in_progress")


async def _run(kind: str, minilm_dir: Path, cfg: ModelConfig, texts: list[str],
               bucket: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Run the texts as one batch of ``bucket`` through Inference; the shapes the backend saw
    and the vectors it returned."""
    backend = create_backend(kind, minilm_dir, cfg)
    seen: list[tuple[int, int]] = []
    outs: list[np.ndarray] = []
    run = backend.run

    def recorded(ids: np.ndarray, mask: np.ndarray, *, shared: bool = False) -> np.ndarray:
        seen.append(ids.shape)
        outs.append(run(ids, mask, shared=shared))
        return outs[-1]

    backend.run = recorded
    tok = TextTokenizer.from_dir(minilm_dir, cfg)
    items = [BatchItem("job", i, e.ids) for i, e in enumerate(tok.encode(texts))
             if isinstance(e, Encoded)]
    inference = Inference(Settings(), backend, "minilm", 1, BusyMeter(), InferredTally())
    try:
        out = await inference.run(NoLease(), Batch("b", "minilm", 1, bucket, items), items)
    finally:
        backend.close()
    assert [r.status for r in out.records] == ["succeeded"] * len(items)
    return seen, np.concatenate(outs)


TEXTS = ["short one", "a somewhat longer sentence with a few more words in it"]


async def test_a_dynamic_shape_runtime_gets_the_longest_row_and_the_same_vectors(
        minilm_dir: Path, minilm_config: ModelConfig) -> None:
    narrow, vectors = await _run("onnxruntime", minilm_dir, minilm_config, TEXTS, 64)
    assert narrow == [(2, 16)]  # 13 tokens at most: 16 wide, not the bucket's 64
    tok = TextTokenizer.from_dir(minilm_dir, minilm_config)
    backend = create_backend("onnxruntime", minilm_dir, minilm_config)
    try:
        full = backend.run(*pad_batch([e.ids for e in tok.encode(TEXTS)], 64))
    finally:
        backend.close()
    cos = (vectors * full).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(full, axis=1))
    assert cos.min() > 0.99999


async def test_the_simulated_device_is_padded_to_its_bucket(
        minilm_dir: Path, minilm_config: ModelConfig) -> None:
    shapes, _ = await _run("simulated", minilm_dir, minilm_config, TEXTS, 64)
    assert shapes == [(2, 64)]
