"""The TensorRT backend: what can be pinned down without a GPU (missing runtime, exact shapes,
profile plan, engine cache key and writes, the load/run/close choreography against stand-in
tensorrt/pycuda modules), and live checks (``-m gpu``) against the golden embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpu_runner.backends import BackendError, BackendUnavailable, TensorRTBackend, create_backend
from gpu_runner.backends import trt as trt_module
from gpu_runner.backends.trt import (
    INSTALL_HINT,
    ProfileShape,
    atomic_write,
    engine_cache_key,
    file_sha256,
    profile_plan,
)
from models.bucketing import pad_batch
from models.config import ModelConfig
from models.tokenize import Encoded, TextTokenizer
from tests.gpu_runner.test_backends import GOLDEN_MIN_COSINE, cosines, embed_bucketed

# fp16 keeps 10 mantissa bits (bf16: 7, which measured 0.99987 at worst on OpenVINO): 0.999 still
# fails a wrong profile, row or overflow by orders of magnitude, without flaking on rounding.
FP16_MIN_COSINE = 0.999
MIN_COSINE = {"fp32": GOLDEN_MIN_COSINE, "fp16": FP16_MIN_COSINE}


# ---------------------------------------------------------------- runs everywhere


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


# ------------------------------------------- the choreography, with stand-in modules


class FakeCuda(types.ModuleType):
    """Just enough of pycuda.driver: host arrays, byte-array "device" memory, a context stack."""

    class Error(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pycuda.driver")
        self.memory: dict[int, bytearray] = {}
        self.pushed = 0
        self.detached = False
        fake = self

        class Context:
            def push(self) -> None:
                fake.pushed += 1

            def detach(self) -> None:
                fake.detached = True

            @staticmethod
            def pop() -> None:
                fake.pushed -= 1

        class Device:
            def __init__(self, index: int) -> None:
                pass

            def name(self) -> str:
                return "Fake GPU"

            def compute_capability(self) -> tuple[int, int]:
                return (9, 0)

            def retain_primary_context(self) -> Context:
                return Context()

        class Stream:
            handle = 7

            def synchronize(self) -> None:
                pass

        self.Context, self.Device, self.Stream = Context, Device, Stream

    def init(self) -> None:
        pass

    def pagelocked_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def mem_alloc(self, nbytes: int) -> Any:
        fake = self

        class Allocation:
            def __int__(self) -> int:
                return id(self)

            def free(self) -> None:
                del fake.memory[int(self)]

        alloc = Allocation()
        self.memory[int(alloc)] = bytearray(nbytes)
        return alloc

    def memcpy_htod_async(self, dest: Any, src: np.ndarray, stream: Any) -> None:
        assert self.pushed == 1, "CUDA call outside the pushed context"
        self.memory[int(dest)][: src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(self, dest: np.ndarray, src: Any, stream: Any) -> None:
        dest[...] = np.frombuffer(self.memory[int(src)][: dest.nbytes], dest.dtype).reshape(
            dest.shape)


class FakeTrt(types.ModuleType):
    """Enough of tensorrt 10: the "engine" is the profile list as JSON; running it writes
    [row sum of the mask, seq_len, profile index, 0...] per row."""

    def __init__(self, cuda: FakeCuda, version: str = "10.3.0") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.builds: list[dict[str, Any]] = []
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                pass

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, list[Any]] = {}

            def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
                self.shapes[name] = [list(lo), list(opt), list(hi)]

        class BuilderConfig:
            def __init__(self) -> None:
                self.flags: set[str] = {"TF32"}
                self.profiles: list[Profile] = []

            def set_flag(self, flag: str) -> None:
                self.flags.add(flag)

            def clear_flag(self, flag: str) -> None:
                self.flags.discard(flag)

            def add_optimization_profile(self, profile: Profile) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

        class Tensor:
            def __init__(self, name: str) -> None:
                self.name = name

        class Network:
            num_inputs, num_outputs = 2, 1

            def get_input(self, i: int) -> Tensor:
                return Tensor(["input_ids", "attention_mask"][i])

            def get_output(self, i: int) -> Tensor:
                return Tensor("embedding")

        class Builder:
            def __init__(self, logger: Logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                assert flags == 0
                return Network()

            def create_builder_config(self) -> BuilderConfig:
                return BuilderConfig()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes:
                build = {"flags": sorted(config.flags),
                         "profiles": [p.shapes for p in config.profiles]}
                fake.builds.append(build)
                return json.dumps(build).encode()

        class OnnxParser:
            num_errors = 0

            def __init__(self, network: Network, logger: Logger) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                return Path(path).is_file()

        class ExecutionContext:
            def __init__(self, profiles: list[dict[str, Any]]) -> None:
                self.profiles, self.profile, self.shapes = profiles, -1, {}
                self.addresses: dict[str, int] = {}

            def set_optimization_profile_async(self, index: int, stream: int) -> bool:
                self.profile = index
                return True

            def set_input_shape(self, name: str, shape: tuple[int, int]) -> bool:
                lo, _, hi = self.profiles[self.profile][name]
                self.shapes[name] = tuple(shape)
                return all(a <= s <= b for a, s, b in zip(lo, shape, hi, strict=True))

            def set_tensor_address(self, name: str, ptr: int) -> None:
                self.addresses[name] = ptr

            def get_tensor_shape(self, name: str) -> tuple[int, int]:
                return (self.shapes["input_ids"][0], 384)

            def execute_async_v3(self, stream: int) -> bool:
                assert cuda.pushed == 1, "execute outside the pushed context"
                batch, seq = self.shapes["attention_mask"]
                raw = cuda.memory[self.addresses["attention_mask"]][: batch * seq * 8]
                mask = np.frombuffer(raw, np.int64).reshape(batch, seq)
                out = np.zeros((batch, 384), np.float32)
                out[:, 0], out[:, 1], out[:, 2] = mask.sum(1), seq, self.profile
                cuda.memory[self.addresses["embedding"]][: out.nbytes] = out.tobytes()
                return True

        class Engine:
            num_io_tensors = 3

            def __init__(self, profiles: list[dict[str, Any]]) -> None:
                self.profiles = profiles
                self.num_optimization_profiles = len(profiles)

            def get_tensor_name(self, i: int) -> str:
                return ["input_ids", "attention_mask", "embedding"][i]

            def get_tensor_mode(self, name: str) -> str:
                return "OUTPUT" if name == "embedding" else "INPUT"

            def get_tensor_dtype(self, name: str) -> Any:
                return np.float32 if name == "embedding" else np.int64

            def create_execution_context(self) -> ExecutionContext:
                return ExecutionContext(self.profiles)

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
                try:
                    return Engine(json.loads(data)["profiles"])
                except ValueError:
                    return None

        self.Logger, self.Builder, self.OnnxParser = Logger, Builder, OnnxParser
        self.Runtime = Runtime
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", TF32="TF32")
        self.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
        self.nptype = lambda dtype: dtype


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


# ------------------------------------------------------------------- needs a GPU


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
