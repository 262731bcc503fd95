"""Which backend ``"auto"`` means on this machine, and the start-up check that backs it.

The rule, from bench/bench_backend.py on the reference CPU (AMD EPYC, 2 cores, avx512_bf16;
figures in docs/models.md):

1. OpenVINO bf16, where the CPU has native BF16 *and* bf16 meets the golden bar for the model.
   For all-MiniLM-L6-v2 it is ~1.8x faster than OpenVINO f32 but misses the bar on short
   degenerate inputs (cosine 0.99987 on "!!!" against the 0.9999 bar), so it is not chosen by
   default: ask for "openvino-bf16" (or "openvino") explicitly to trade that accuracy for speed.
2. else OpenVINO f32, which measured 1.1-1.2x faster than ONNX Runtime on real text;
3. else ONNX Runtime fp32.

Whatever the rule picks must then reproduce built-in sentences' embeddings against ONNX Runtime
fp32 (cosine >= 0.9999); if not, ONNX Runtime is used. The choice is logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gpu_runner.backends.base import Backend, BackendError
from gpu_runner.backends.ort import OnnxRuntimeBackend
from gpu_runner.backends.ov import cpu_supports_bf16
from models.bucketing import bucket_for, pad_batch
from models.config import ModelConfig
from models.tokenize import Encoded, TextTokenizer

log = logging.getLogger("inferq.backend")

SELF_CHECK_MIN_COSINE = 0.9999
# Measured facts behind the rule (see the module docstring).
BF16_MEETS_GOLDEN_BAR = False
OPENVINO_F32_FASTER_THAN_ORT = True

SELF_CHECK_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "!!!",
    "A naïve café owner in Zürich serves crème brûlée.",
    "東京は日本の首都です。",
    "Batch inference services keep accelerators busy with well-shaped batches, so that no "
    "tenant starves another while the queue drains in order of arrival and priority.",
    "42",
]


def auto_kind(*, bf16_supported: bool) -> str:
    """The backend kind the documented rule picks, before the self-check."""
    if bf16_supported and BF16_MEETS_GOLDEN_BAR:
        return "openvino-bf16"
    if OPENVINO_F32_FASTER_THAN_ORT:
        return "openvino-f32"
    return "onnxruntime"


def self_check(candidate: Backend, reference: Backend, tokenizer: TextTokenizer) -> float:
    """Lowest cosine between ``candidate`` and ``reference`` on the built-in sentences."""
    encoded = [e for e in tokenizer.encode(SELF_CHECK_TEXTS) if isinstance(e, Encoded)]
    bucket = bucket_for(max(e.length for e in encoded), candidate.config.buckets)
    ids, mask = pad_batch([e.ids for e in encoded], bucket)
    got, want = candidate.run(ids, mask), reference.run(ids, mask)
    cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cos.min())


def select_auto(
    version_dir: Path,
    config: ModelConfig,
    *,
    threads: int | None = None,
    streams: int | None = None,
) -> Backend:
    """Load the backend the rule picks, verify it against ONNX Runtime fp32, return it loaded."""
    from gpu_runner.backends import create_backend  # the factory imports this module

    kind = auto_kind(bf16_supported=cpu_supports_bf16())
    reference = OnnxRuntimeBackend(version_dir, config, threads=threads)
    reference.load()
    if kind == "onnxruntime":
        log.info("backend auto -> onnxruntime/fp32 (rule)")
        return reference
    candidate = create_backend(kind, version_dir, config, threads=threads, streams=streams)
    try:
        # A handful of texts: the HF path alone (the fast path's word cache would cost more).
        tokenizer = TextTokenizer.from_dir(version_dir, config, fast=False)
        cosine = self_check(candidate, reference, tokenizer)
    except BackendError as exc:
        candidate.close()
        log.warning("backend auto: %s failed its self-check (%s); using onnxruntime", kind, exc)
        return reference
    if cosine < SELF_CHECK_MIN_COSINE:
        candidate.close()
        log.warning(
            "backend auto: %s reached cosine %.6f < %s against onnxruntime fp32; using onnxruntime",
            candidate.label,
            cosine,
            SELF_CHECK_MIN_COSINE,
        )
        return reference
    reference.close()
    log.info("backend auto -> %s (self-check cosine %.7f)", candidate.label, cosine)
    return candidate
