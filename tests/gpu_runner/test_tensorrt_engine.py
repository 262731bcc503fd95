"""The TensorRT backend's engine logic, pinned down without a GPU or TensorRT: the missing
runtime's message, exact shapes, one profile per bucket, the engine cache key and its writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_runner.backends import BackendUnavailable, TensorRTBackend, create_backend
from gpu_runner.backends.trt import (
    INSTALL_HINT,
    ProfileShape,
    atomic_write,
    engine_cache_key,
    file_sha256,
    profile_plan,
)
from models.config import ModelConfig


def test_the_module_imports_without_tensorrt_or_pycuda() -> None:
    code = (
        "import sys; sys.modules.update(tensorrt=None, pycuda=None);"
        "import gpu_runner.backends as b; assert 'tensorrt' in b.KINDS"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_without_tensorrt_the_factory_says_how_to_get_it(
    minilm_dir: Path, minilm_config: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("tensorrt", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # None: "import name" raises ImportError
    for kind in ("tensorrt", "tensorrt-fp32"):
        with pytest.raises(BackendUnavailable) as info:
            create_backend(kind, minilm_dir, minilm_config)
        assert INSTALL_HINT in str(info.value) and not info.value.retryable


def test_shapes_are_exactly_the_buckets_up_to_max_batch(
    minilm_dir: Path, minilm_config: ModelConfig
) -> None:
    shapes = TensorRTBackend(minilm_dir, minilm_config).supported_shapes()
    assert shapes.exact and shapes.buckets == minilm_config.buckets
    for bucket in minilm_config.buckets:
        most = minilm_config.max_batch_for(bucket)
        assert shapes.accepts(1, bucket) and shapes.accepts(most, bucket)
        assert not shapes.accepts(most + 1, bucket)
    assert not any(shapes.accepts(1, s) for s in range(1, 300) if s not in minilm_config.buckets)
    assert not shapes.accepts(1, 17) and not shapes.accepts(minilm_config.max_batch_for(16) + 1, 16)


def test_one_profile_per_bucket() -> None:
    config = ModelConfig(name="m", version=1, output_dim=4, max_seq_len=64,
                         buckets=[8, 16, 64], max_batch_tokens=256, max_batch_size=20)
    assert profile_plan(config) == [
        ProfileShape(8, (1, 8), (20, 8), (20, 8)),  # capped by max_batch_size
        ProfileShape(16, (1, 16), (16, 16), (16, 16)),  # 256 tokens / 16
        ProfileShape(64, (1, 64), (4, 64), (4, 64)),
    ]


def test_the_engine_cache_key_follows_everything_an_engine_depends_on(
    tmp_path: Path, minilm_config: ModelConfig
) -> None:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"graph-1")
    b.write_bytes(b"graph-2")
    plan = profile_plan(minilm_config)
    base: dict[str, Any] = dict(model_sha256=file_sha256(a), trt_version="10.3.0",
                                gpu="NVIDIA L4 sm_89", precision="fp16", plan=plan)
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 32
    changed = [
        {"model_sha256": file_sha256(b)},
        {"trt_version": "10.4.0"},
        {"gpu": "NVIDIA H100 80GB HBM3 sm_90"},
        {"precision": "fp32"},
        {"plan": plan[:-1]},
    ]
    keys = {engine_cache_key(**{**base, **change}) for change in changed}
    assert len(keys) == len(changed) and key not in keys


def test_an_interrupted_cache_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache" / "m.engine"
    atomic_write(path, b"old engine")
    assert path.read_bytes() == b"old engine"

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, b"new engine, half written")
    assert path.read_bytes() == b"old engine"
    assert [p.name for p in path.parent.iterdir()] == ["m.engine"]
