"""The TensorRT backend's choreography against stand-in tensorrt/pycuda modules: engine build
with one profile per bucket, the engine cache (hit, corrupt, unwritable), device memory and
the CUDA context released on close."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpu_runner.backends import BackendError, BackendUnavailable, TensorRTBackend
from gpu_runner.backends import trt as trt_module
from gpu_runner.backends.trt import profile_plan
from models.bucketing import pad_batch
from models.config import ModelConfig
from tests.gpu_runner.trt_fakes import FakeCuda, FakeTrt


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTrt, FakeCuda]:
    cuda = FakeCuda()
    trt = FakeTrt(cuda)
    monkeypatch.setattr(trt_module, "_import_gpu_modules", lambda: (trt, cuda))
    return trt, cuda


def test_load_run_close_with_stand_in_modules(
    fakes: tuple[FakeTrt, FakeCuda], minilm_dir: Path, minilm_config: ModelConfig,
    tmp_path: Path,
) -> None:
    trt, cuda = fakes
    backend = TensorRTBackend(minilm_dir, minilm_config, cache_dir=tmp_path)
    with backend:
        (build,) = trt.builds
        assert "FP16" in build["flags"]
        plan = profile_plan(minilm_config)
        assert [p["input_ids"] for p in build["profiles"]] == [
            [list(p.min), list(p.opt), list(p.max)] for p in plan]
        assert all(p["input_ids"] == p["attention_mask"] for p in build["profiles"])
        for index, shape in enumerate(backend.supported_shapes().shapes):
            for batch in (1, shape.max_batch):
                ids, mask = pad_batch([[101, 7, 102][: 2 + row % 2] for row in range(batch)],
                                      shape.seq_len)
                out = backend.run(ids, mask)
                np.testing.assert_array_equal(out[:, 0], mask.sum(1))
                assert (out[:, 1] == shape.seq_len).all() and (out[:, 2] == index).all()
        with pytest.raises(BackendError, match="does not accept shape"):
            backend.run(*pad_batch([[101, 102]], 17))
        assert cuda.pushed == 0
    assert cuda.memory == {} and cuda.detached and cuda.pushed == 0
    assert backend.engine_path is not None and backend.engine_path.parent == tmp_path

    again = TensorRTBackend(minilm_dir, minilm_config, cache_dir=tmp_path)
    with again:
        assert again.engine_from_cache and len(trt.builds) == 1
    fp32 = TensorRTBackend(minilm_dir, minilm_config, cache_dir=tmp_path, precision="fp32")
    with fp32:
        assert not fp32.engine_from_cache and trt.builds[-1]["flags"] == []  # TF32 off
    assert len(list(tmp_path.glob("minilm-1-*.engine"))) == 2


def test_a_corrupt_cached_engine_is_rebuilt(
    fakes: tuple[FakeTrt, FakeCuda], minilm_dir: Path, minilm_config: ModelConfig,
    tmp_path: Path,
) -> None:
    trt, _ = fakes
    with TensorRTBackend(minilm_dir, minilm_config, cache_dir=tmp_path) as first:
        assert first.engine_path is not None
    first.engine_path.write_bytes(b"\x00truncated")
    with TensorRTBackend(minilm_dir, minilm_config, cache_dir=tmp_path) as second:
        assert not second.engine_from_cache and len(trt.builds) == 2
    assert json.loads(first.engine_path.read_bytes())["profiles"]


def test_an_unwritable_cache_only_costs_a_rebuild(
    fakes: tuple[FakeTrt, FakeCuda], minilm_dir: Path, minilm_config: ModelConfig,
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with TensorRTBackend(minilm_dir, minilm_config, cache_dir=blocker / "engines") as backend:
        assert backend.run(*pad_batch([[101, 102]], 8)).shape == (1, 384)


def test_fp16_needs_tensorrt_10(
    fakes: tuple[FakeTrt, FakeCuda], minilm_dir: Path, minilm_config: ModelConfig,
) -> None:
    trt, _ = fakes
    trt.__version__ = "11.4.0"
    del trt.BuilderFlag.FP16  # removed with weak typing in TensorRT 11
    with pytest.raises(BackendUnavailable, match=r"no BuilderFlag\.FP16"):
        TensorRTBackend(minilm_dir, minilm_config).load()
