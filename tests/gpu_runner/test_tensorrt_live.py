"""The TensorRT backend on a real GPU (``-m gpu``; skipped without tensorrt, pycuda and a
CUDA device): golden embeddings in every bucket, and the engine cache on a second load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_runner.backends import TensorRTBackend
from gpu_runner.backends.trt import INSTALL_HINT
from models.bucketing import pad_batch
from models.config import ModelConfig
from models.tokenize import Encoded, TextTokenizer
from tests.gpu_runner.test_backends import GOLDEN_MIN_COSINE, cosines, embed_bucketed

# fp16 keeps 10 mantissa bits (bf16: 7, which measured 0.99987 at worst on OpenVINO): 0.999 still
# fails a wrong profile, row or overflow by orders of magnitude, without flaking on rounding.
FP16_MIN_COSINE = 0.999
MIN_COSINE = {"fp32": GOLDEN_MIN_COSINE, "fp16": FP16_MIN_COSINE}


def _no_gpu_reason() -> str | None:
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"needs tensorrt and pycuda ({exc.msg}): {INSTALL_HINT}"
    try:
        cuda.init()
        if cuda.Device.count() == 0:
            return "no CUDA device"
    except cuda.Error as exc:
        return f"no usable CUDA driver ({exc})"
    return None


NO_GPU = _no_gpu_reason()
needs_gpu = pytest.mark.skipif(NO_GPU is not None, reason=str(NO_GPU))


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def live(
    request: pytest.FixtureRequest, minilm_dir: Path, minilm_config: ModelConfig,
    engine_cache: Path,
) -> Iterator[TensorRTBackend]:
    if NO_GPU:
        pytest.skip(NO_GPU)
    backend = TensorRTBackend(minilm_dir, minilm_config, precision=request.param,
                              cache_dir=engine_cache)
    with backend:
        yield backend


@pytest.mark.gpu
@needs_gpu
def test_live_golden_embeddings_in_every_bucket_at_batch_1_and_max(
    live: TensorRTBackend, minilm_dir: Path, minilm_config: ModelConfig, golden: dict[str, Any]
) -> None:
    items = golden["items"]
    tokenizer = TextTokenizer.from_dir(minilm_dir, minilm_config)
    encoded: list[Encoded] = tokenizer.encode([i["text"] for i in items])  # type: ignore[assignment]
    want = np.array([i["embedding"] for i in items], np.float32)
    floor = MIN_COSINE[live.precision]
    cos = cosines(embed_bucketed(live, encoded), want)  # type: ignore[arg-type]
    assert cos.min() >= floor, f"{live.label}: min cosine {cos.min():.6f} < {floor}"
    for shape in live.supported_shapes().shapes:
        fits = [k for k, e in enumerate(encoded) if len(e.ids) <= shape.seq_len]
        for batch in (1, shape.max_batch):
            rows = [fits[r % len(fits)] for r in range(batch)]
            out = live.run(*pad_batch([encoded[k].ids for k in rows], shape.seq_len))
            cos = cosines(out, want[rows])
            assert cos.min() >= floor, f"{live.label} [{batch}, {shape.seq_len}]: {cos.min():.6f}"


@pytest.mark.gpu
@needs_gpu
def test_live_second_load_uses_the_engine_cache(
    live: TensorRTBackend, minilm_dir: Path, minilm_config: ModelConfig, engine_cache: Path
) -> None:
    ids, mask = pad_batch([[101, 7592, 2088, 102], [101, 7592, 102]], 16)
    with TensorRTBackend(minilm_dir, minilm_config, precision=live.precision,  # type: ignore[arg-type]
                         cache_dir=engine_cache) as again:
        assert again.engine_from_cache and again.engine_path == live.engine_path
        np.testing.assert_allclose(again.run(ids, mask), live.run(ids, mask), atol=1e-6)
