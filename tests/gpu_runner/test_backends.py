"""One suite over every real backend and precision: golden embeddings, padding invariance,
the interface's typed errors, and the "auto" choice."""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_runner.backends import (
    Backend,
    BackendError,
    BackendInputError,
    BackendOutputError,
    BucketShapes,
    OnnxRuntimeBackend,
    OpenVinoBackend,
    cpu_supports_bf16,
    create_backend,
)
from gpu_runner.backends import select as backend_select
from gpu_runner.backends.ov import RequestPool, default_streams, split_count
from models.bucketing import bucket_for, pad_batch
from models.config import ModelConfig
from models.errors import ModelLoadError
from models.tokenize import Encoded, TextTokenizer

KINDS = ["onnxruntime", "openvino-f32", "openvino-bf16"]
GOLDEN_MIN_COSINE = 0.9999
# OpenVINO bf16 misses the golden bar on this one degenerate text (measured 0.99987); every
# other golden text meets it. This is why "auto" does not pick bf16 (see backends/select.py).
BF16_KNOWN_SHORTFALL = {"!!!": 0.9995}
PADDING_MIN_COSINE = {"fp32": 0.99999, "bf16": 0.9999}


@pytest.fixture(scope="module", params=KINDS)
def backend(
    request: pytest.FixtureRequest, minilm_dir: Path, minilm_config: ModelConfig
) -> Iterator[Backend]:
    if request.param == "openvino-bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no native BF16 (needs AMX or AVX-512 BF16)")
    backend = create_backend(request.param, minilm_dir, minilm_config)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path, minilm_config: ModelConfig) -> TextTokenizer:
    return TextTokenizer.from_dir(minilm_dir, minilm_config)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def embed_bucketed(backend: Backend, encoded: list[Encoded]) -> np.ndarray:
    """Embed items the way a runner does: grouped by bucket, padded to it."""
    out = np.zeros((len(encoded), backend.config.output_dim), np.float32)
    by_bucket: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        by_bucket.setdefault(bucket_for(e.length, backend.config.buckets), []).append(i)
    for bucket, rows in by_bucket.items():
        out[rows] = backend.run(*pad_batch([encoded[i].ids for i in rows], bucket))
    return out


def test_golden_embeddings(
    backend: Backend, tokenizer: TextTokenizer, golden: dict[str, Any]
) -> None:
    items = golden["items"]
    encoded = tokenizer.encode([item["text"] for item in items])
    assert [e.length for e in encoded] == [item["num_tokens"] for item in items]  # type: ignore[union-attr]
    got = embed_bucketed(backend, encoded)  # type: ignore[arg-type]
    want = np.array([item["embedding"] for item in items], np.float32)
    cos = cosines(got, want)
    for item, c in zip(items, cos, strict=True):
        floor = GOLDEN_MIN_COSINE
        if backend.precision == "bf16":
            floor = BF16_KNOWN_SHORTFALL.get(item["text"], GOLDEN_MIN_COSINE)
        assert c >= floor, f"{backend.label}: cosine {c:.6f} < {floor} for {item['text'][:40]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_padding_invariance(
    backend: Backend, tokenizer: TextTokenizer, golden: dict[str, Any]
) -> None:
    texts = [item["text"] for item in golden["items"]]
    words = "the model pools token states over the attention mask before normalising".split()
    texts += [" ".join(words[: 1 + i % len(words)] * (1 + i)) for i in range(64 - len(texts))]
    encoded: list[Encoded] = tokenizer.encode(texts)  # type: ignore[assignment]
    assert len(encoded) == 64 and len({e.length for e in encoded}) > 20
    alone = np.concatenate([backend.run(*pad_batch([e.ids], e.length)) for e in encoded])
    ids = [e.ids for e in encoded]
    padded_256 = np.concatenate([backend.run(*pad_batch([i], 256)) for i in ids[:8]])
    batched = backend.run(*pad_batch(ids, bucket_for(max(map(len, ids)), backend.config.buckets)))
    floor = PADDING_MIN_COSINE[backend.precision]
    assert cosines(padded_256, alone[:8]).min() >= floor
    assert cosines(batched, alone).min() >= floor


def run_shapes(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The [batch, seq_len] of every ``run`` the backend is asked for from now on."""
    shapes: list[tuple[int, int]] = []
    real_run = backend.run

    def run(ids: np.ndarray, mask: np.ndarray, **kw: Any) -> np.ndarray:
        shapes.append(ids.shape)
        return real_run(ids, mask, **kw)

    monkeypatch.setattr(backend, "run", run)
    return shapes


def test_a_dynamic_runtime_warms_up_its_smallest_and_largest_bucket(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = backend.supported_shapes()
    cfg = backend.config
    assert shapes.buckets == cfg.buckets and not shapes.exact
    assert [s.max_batch for s in shapes.shapes] == [
        min(cfg.max_batch_size, cfg.max_batch_tokens // b) for b in cfg.buckets]
    ran = run_shapes(backend, monkeypatch)
    backend.warmup()
    smallest, largest = cfg.buckets[0], cfg.buckets[-1]
    assert ran == [(cfg.max_batch_for(smallest), smallest), (cfg.max_batch_for(largest), largest)]


class FixedShapes(Backend):
    """A fixed-shape engine's interface (every batch exactly one bucket) on zeros."""

    name = "fixed"
    precision = "fp32"

    def supported_shapes(self) -> BucketShapes:
        return BucketShapes.from_config(self.config, exact=True)

    def _load(self) -> None:
        pass

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.zeros((len(input_ids), self.config.output_dim), np.float32)

    def _close(self) -> None:
        pass


def test_a_fixed_shape_engine_warms_up_every_bucket_at_its_largest_batch(
    minilm_dir: Path, minilm_config: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FixedShapes(minilm_dir, minilm_config)
    engine.load()
    ran = run_shapes(engine, monkeypatch)
    engine.warmup()
    assert ran == [(minilm_config.max_batch_for(b), b) for b in minilm_config.buckets]


def test_inputs_are_validated(backend: Backend) -> None:
    ids = np.ones((2, 8), np.int64)
    with pytest.raises(BackendInputError, match="int64"):
        backend.run(ids.astype(np.int32), ids)
    with pytest.raises(BackendInputError, match="differ"):
        backend.run(ids, ids[:, :4])
    with pytest.raises(BackendInputError, match="does not accept shape"):
        backend.run(np.ones((1, 300), np.int64), np.ones((1, 300), np.int64))


class WrongShape(OnnxRuntimeBackend):
    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return super()._infer(input_ids, attention_mask)[:, :10]


def test_a_wrong_output_shape_is_a_typed_error(
    minilm_dir: Path, minilm_config: ModelConfig
) -> None:
    backend = WrongShape(minilm_dir, minilm_config)
    ids = np.ones((2, 4), np.int64)
    with pytest.raises(BackendError, match="before load"):
        backend.run(ids, ids)
    with backend:
        with pytest.raises(
            BackendOutputError, match=r"expected float32 \(2, 384\), got \(\(2, 10\)"
        ):
            backend.run(ids, ids)


def test_exact_shapes_model_a_fixed_profile_engine(minilm_config: ModelConfig) -> None:
    shapes = BucketShapes.from_config(minilm_config, exact=True)
    assert shapes.accepts(8, 256) and not shapes.accepts(9, 256) and not shapes.accepts(1, 100)
    dynamic = BucketShapes.from_config(minilm_config)
    assert dynamic.accepts(128, 100) and not dynamic.accepts(1, 257) and not dynamic.accepts(0, 16)


def test_openvino_splits_only_batches_big_enough_to_gain() -> None:
    # rows x seq_len -> requests: small batches run whole (a half on one thread is slower).
    cases = {(1, 256): 1, (4, 16): 1, (8, 16): 1, (16, 16): 2, (7, 64): 2, (64, 32): 2}
    assert {shape: split_count(*shape, 2) for shape in cases} == cases
    assert split_count(64, 32, 1) == 1 and split_count(3, 128, 4) == 3
    assert [default_streams(t) for t in (1, 2, 8)] == [1, 2, 2]


def phrase_batches(tokenizer: TextTokenizer, shapes: list[tuple[int, int]]
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A padded batch of ``rows`` phrases of growing length per (rows, bucket)."""
    words = "late formation keeps fairness decisions close to the accelerator".split()
    batches = []
    for rows, bucket in shapes:
        texts = [" ".join(words[: 2 + r] * 3) for r in range(rows)]
        encoded: list[Encoded] = tokenizer.encode(texts)  # type: ignore[assignment]
        batches.append(pad_batch([e.ids[:bucket] for e in encoded], bucket))
    return batches


@pytest.fixture
def one_and_two_streams(minilm_dir: Path, minilm_config: ModelConfig
                        ) -> Iterator[tuple[OpenVinoBackend, OpenVinoBackend]]:
    """OpenVINO f32 on two threads, loaded: one stream, and two."""
    whole = OpenVinoBackend(minilm_dir, minilm_config, threads=2, streams=1, precision="fp32")
    two = OpenVinoBackend(minilm_dir, minilm_config, threads=2, streams=2, precision="fp32")
    with whole, two:
        yield whole, two


def test_openvino_split_batches_embed_as_the_whole_batch_does(
    one_and_two_streams: tuple[OpenVinoBackend, OpenVinoBackend], minilm_config: ModelConfig,
    tokenizer: TextTokenizer
) -> None:
    whole, split = one_and_two_streams
    assert (whole.split_requests, split.split_requests) == (0, 2)
    # odd split, even split, whole
    for ids, mask in phrase_batches(tokenizer, [(7, 64), (2, 128), (3, 16)]):
        got, want = split.run(ids, mask), whole.run(ids, mask)
        assert got.shape == (len(ids), minilm_config.output_dim)
        np.testing.assert_allclose(got, want, atol=2e-5)


def test_openvino_runs_batches_side_by_side_one_per_stream_with_the_same_vectors(
    one_and_two_streams: tuple[OpenVinoBackend, OpenVinoBackend], tokenizer: TextTokenizer
) -> None:
    whole, two = one_and_two_streams
    assert (whole.concurrency, two.concurrency) == (1, 2)
    batches = phrase_batches(tokenizer, [(7, 64), (2, 128), (3, 16), (9, 32), (1, 8)])
    want = [whole.run(ids, mask) for ids, mask in batches]
    # Six threads, two streams: callers wait for a free stream, none sees another's rows.
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(lambda b: two.run(*b, shared=True), batches * 3))
    for g, w in zip(got, want * 3, strict=True):
        np.testing.assert_allclose(g, w, atol=2e-5)
    # shared=True on a backend of one stream is the plain run.
    np.testing.assert_allclose(whole.run(*batches[0], shared=True), want[0], atol=0)


def test_a_request_pool_lends_each_request_to_one_caller_at_a_time() -> None:
    pool, events = RequestPool(["r0", "r1"]), []
    with pool.borrow(1) as [a]:
        def split() -> None:
            with pool.borrow(2) as both:  # waits for the one lent
                events.append(sorted(both))
        t = threading.Thread(target=split)
        t.start()
        t.join(0.2)
        assert t.is_alive() and events == []
        events.append(a)
    t.join(2)
    assert events == ["r0", ["r0", "r1"]]


@pytest.fixture
def broken_dir(tmp_path: Path, minilm_dir: Path) -> Path:
    shutil.copy(minilm_dir / "config.json", tmp_path / "config.json")
    shutil.copy(minilm_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    return tmp_path


@pytest.mark.parametrize("cls", [OnnxRuntimeBackend, OpenVinoBackend])
def test_missing_model_fails_naming_the_path(
    cls: type[Backend], broken_dir: Path, minilm_config: ModelConfig
) -> None:
    for version_dir in (broken_dir, broken_dir / "absent"):
        with pytest.raises(ModelLoadError, match="model file is missing") as info:
            cls(version_dir, minilm_config).load()
        assert info.value.path == version_dir / "model.onnx"


@pytest.mark.parametrize("cls", [OnnxRuntimeBackend, OpenVinoBackend])
def test_corrupt_model_fails_naming_the_path(
    cls: type[Backend], broken_dir: Path, minilm_config: ModelConfig
) -> None:
    (broken_dir / "model.onnx").write_bytes(b"\x00garbage\xff" * 100)
    with pytest.raises(ModelLoadError, match=r"cannot (read|load) the graph") as info:
        cls(broken_dir, minilm_config).load()
    assert str(broken_dir / "model.onnx") in str(info.value)


def test_a_config_naming_other_graph_inputs_fails(
    minilm_dir: Path, minilm_config: ModelConfig
) -> None:
    config = ModelConfig(name="minilm", version=1, output_dim=384, output_name="pooled")
    for cls in (OnnxRuntimeBackend, OpenVinoBackend):
        with pytest.raises(ModelLoadError, match="config expects"):
            cls(minilm_dir, config).load()


def test_unknown_kind_is_rejected(minilm_dir: Path, minilm_config: ModelConfig) -> None:
    with pytest.raises(ValueError, match="unknown backend kind 'tpu'"):
        create_backend("tpu", minilm_dir, minilm_config)


def test_auto_picks_by_the_rule_and_logs_it(
    minilm_dir: Path, minilm_config: ModelConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inferq.backend")
    backend = create_backend("auto", minilm_dir, minilm_config, threads=2)
    try:
        assert backend.label == "openvino/fp32"
        assert "backend auto -> openvino/fp32" in caplog.text
    finally:
        backend.close()
    assert backend_select.auto_kind(bf16_supported=False) == "openvino-f32"


def test_auto_falls_back_to_onnxruntime_when_the_self_check_fails(
    minilm_dir: Path,
    minilm_config: ModelConfig,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backend_select, "SELF_CHECK_MIN_COSINE", 1.5)  # nothing can pass
    caplog.set_level(logging.INFO, logger="inferq.backend")
    backend = create_backend("auto", minilm_dir, minilm_config)
    try:
        assert backend.label == "onnxruntime/fp32"
        assert "using onnxruntime" in caplog.text
    finally:
        backend.close()


def test_onnxruntime_reuses_its_saved_optimised_graph(
    minilm_dir: Path, minilm_config: ModelConfig, tmp_path: Path
) -> None:
    ids, mask = pad_batch([[101, 7592, 2088, 102], [101, 7592, 102]], 16)
    first = OnnxRuntimeBackend(minilm_dir, minilm_config, optimized_cache=tmp_path)
    with first:
        want = first.run(ids, mask)
    (saved,) = tmp_path.glob("minilm-1-*.onnx")
    mtime = saved.stat().st_mtime_ns
    with OnnxRuntimeBackend(minilm_dir, minilm_config, optimized_cache=tmp_path) as second:
        np.testing.assert_allclose(second.run(ids, mask), want, atol=1e-6)
    assert saved.stat().st_mtime_ns == mtime
