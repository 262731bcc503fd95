"""TensorRT on an NVIDIA GPU: one optimisation profile per bucket, engines cached on disk.

Written against the TensorRT 10 Python API and tested without a GPU (the live tests are
``-m gpu`` in tests/gpu_runner/test_tensorrt_live.py). API facts this module relies on, checked in
NVIDIA's documentation (docs.nvidia.com/deeplearning/tensorrt, "Migrating from 8.x to 10.x",
the Python ``DataType`` and ``IOptimizationProfile`` pages) and in TRT 10 multi-profile
sample code:

- TRT 10 replaced bindings by named I/O tensors (``num_io_tensors``, ``get_tensor_name(i)``,
  ``get_tensor_mode(name)``, ``set_input_shape``, ``set_tensor_address``,
  ``execute_async_v3``). With several profiles the tensor names are the same for every
  profile: the context's selected profile (``set_optimization_profile_async``) decides, there
  is no TRT 8 style "name [profile 1]" binding.
- ``DataType.INT64`` is a supported I/O type in TRT 10, so the int64 ids and mask go in as they
  are (host buffers take whatever dtype the engine reports, so an INT32 engine works too).
- TRT 11 removed the weak-typing builder flags, ``BuilderFlag.FP16`` among them; ``fp16`` then
  needs a graph converted to mixed precision beforehand, which this module does not do: it
  raises ``BackendUnavailable`` and ``fp32`` still works.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from gpu_runner.backends.base import Backend, BackendError, BackendUnavailable, BucketShapes
from models.config import ModelConfig
from models.errors import ModelLoadError

log = logging.getLogger("inferq.backend")

Precision = Literal["fp16", "fp32"]
INSTALL_HINT = "pip install 'inferq[gpu]' on a machine with CUDA; TensorRT needs an NVIDIA GPU"
ENGINE_DIR = ".engines"
"""Default engine cache, inside the version folder: it lives and dies with the model files."""


class ProfileShape(NamedTuple):
    """One optimisation profile: the [batch, seq_len] range both inputs get for one bucket."""

    seq_len: int
    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]


def profile_plan(config: ModelConfig) -> list[ProfileShape]:
    """One profile per bucket, fixed seq_len, batch 1..max_batch tuned at opt_batch.

    Fixed seq_len per profile is what lets the batch former's padded buckets map onto
    pre-allocated buffers; a single [1..256] profile would tune kernels for one length only.
    """
    return [
        ProfileShape(s.seq_len, (1, s.seq_len), (s.opt_batch, s.seq_len), (s.max_batch, s.seq_len))
        for s in BucketShapes.from_config(config, exact=True).shapes
    ]


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model files run to hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_cache_key(
    *, model_sha256: str, trt_version: str, gpu: str, precision: str, plan: list[ProfileShape]
) -> str:
    """Everything a serialized engine depends on: an engine is only valid for the exact
    TensorRT version and GPU model it was built with, and for its graph, precision and shapes."""
    profiles = ";".join(f"{p.seq_len}:{p.min}:{p.opt}:{p.max}" for p in plan)
    text = "\n".join(
        [model_sha256, f"tensorrt {trt_version}", f"gpu {gpu}", precision, profiles]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling and a rename: a reader (or a runner
    started while another is building) sees the whole engine or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import_gpu_modules() -> tuple[Any, Any]:
    """Import tensorrt and pycuda.driver lazily: this module must import on any CPU machine."""
    try:
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"tensorrt backend: {exc.msg}; {INSTALL_HINT}") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"tensorrt backend needs TensorRT >= 10, got {trt.__version__}")
    return trt, cuda


class _Slot(NamedTuple):
    """What one bucket runs with: its profile's context and buffers sized for max_batch."""

    profile: int
    context: Any
    host_in: dict[str, np.ndarray]
    device_in: dict[str, Any]
    host_out: np.ndarray
    device_out: Any


class TensorRTBackend(Backend):
    """A TensorRT engine built from ``model.onnx`` (fp16 by default, or fp32), cached on disk.

    ``cache_dir``: where serialized engines are kept (default ``<version_dir>/.engines``),
    keyed by model sha256, TensorRT version, GPU name and compute capability, precision and
    profile shapes; a first start builds for minutes, later ones only deserialize. An
    unwritable cache only costs the rebuild on the next start.

    The runner calls ``run()`` from worker threads (``asyncio.to_thread``), not the thread
    that loaded: the device's primary CUDA context is retained once and pushed/popped around
    every call, and a lock keeps the shared buffers and stream to one batch at a time.
    """

    name = "tensorrt"
    ahead = 1

    def __init__(
        self,
        version_dir: Path,
        config: ModelConfig,
        *,
        threads: int | None = None,
        precision: Precision = "fp16",
        cache_dir: Path | None = None,
        device: int = 0,
    ) -> None:
        super().__init__(version_dir, config, threads=threads)  # threads: unused on a GPU
        if precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir else self.version_dir / ENGINE_DIR
        self.device = device
        self.engine_path: Path | None = None
        self.engine_from_cache = False
        self._lock = threading.Lock()
        self._cuda: Any = None
        self._ctx: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._stream: Any = None
        self._slots: dict[int, _Slot] = {}

    def supported_shapes(self) -> BucketShapes:
        """Exact: every batch is one bucket's seq_len, at most its max_batch rows."""
        return BucketShapes.from_config(self.config, exact=True)

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def _load(self) -> None:
        trt, cuda = _import_gpu_modules()
        if self.precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendUnavailable(
                f"tensorrt fp16: TensorRT {trt.__version__} has no BuilderFlag.FP16 (weak typing "
                "was removed in TensorRT 11); use kind tensorrt-fp32 or TensorRT 10"
            )
        self._cuda = cuda
        try:
            cuda.init()
            dev = cuda.Device(self.device)
            self._ctx = dev.retain_primary_context()
        except cuda.Error as exc:
            raise BackendUnavailable(
                f"tensorrt: no usable CUDA device {self.device} ({exc}); {INSTALL_HINT}"
            ) from exc
        major, minor = dev.compute_capability()
        gpu = f"{dev.name()} sm_{major}{minor}"
        try:
            with self._current():
                self._setup(trt, cuda, gpu)
        except BaseException:
            self._release()
            raise
        log.info("tensorrt engine %s (%s, %s, cached=%s)", self.engine_path, gpu,
                 self.precision, self.engine_from_cache)

    def _setup(self, trt: Any, cuda: Any, gpu: str) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        plan = profile_plan(self.config)
        key = engine_cache_key(model_sha256=file_sha256(self.model_path),
                               trt_version=trt.__version__, gpu=gpu,
                               precision=self.precision, plan=plan)
        self.engine_path = self.cache_dir / (
            f"{self.config.name}-{self.config.version}-{self.precision}-{key}.engine")
        self._runtime = runtime = trt.Runtime(logger)  # must outlive the engine
        engine = None
        if self.engine_path.is_file():
            engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if engine is None:
                log.warning("cached engine %s does not deserialize; rebuilding", self.engine_path)
        self.engine_from_cache = engine is not None
        if engine is None:
            data = self._build(trt, logger, plan)
            try:
                atomic_write(self.engine_path, data)
            except OSError as exc:
                log.warning("cannot cache the engine at %s (%s)", self.engine_path, exc)
            engine = runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise ModelLoadError(self.model_path, "TensorRT cannot deserialize its own engine")
        self._engine, self._stream = engine, cuda.Stream()
        self._allocate(trt, cuda, engine, plan)

    def _build(self, trt: Any, logger: Any, plan: list[ProfileShape]) -> bytes:
        log.info("building a tensorrt %s engine for %s (minutes)", self.precision, self.model_path)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(self.model_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(self.model_path, f"TensorRT cannot parse the graph ({errors})")
        inputs = sorted(network.get_input(i).name for i in range(network.num_inputs))
        outputs = [network.get_output(i).name for i in range(network.num_outputs)]
        if inputs != sorted(self.config.inputs) or outputs != [self.config.output_name]:
            raise ModelLoadError(
                self.model_path,
                f"graph has inputs {inputs} and outputs {outputs}; config expects inputs "
                f"{self.config.inputs} and output {self.config.output_name!r}",
            )
        config = builder.create_builder_config()
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default; fp32 means fp32
        for p in plan:
            profile = builder.create_optimization_profile()
            for name in self.config.inputs:
                profile.set_shape(name, p.min, p.opt, p.max)
            config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(self.model_path, "TensorRT could not build an engine (see log)")
        return bytes(serialized)

    def _allocate(self, trt: Any, cuda: Any, engine: Any, plan: list[ProfileShape]) -> None:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        out = self.config.output_name
        if sorted(n for n in names if is_input[n]) != sorted(self.config.inputs) or [
            n for n in names if not is_input[n]
        ] != [out]:
            raise ModelLoadError(self.model_path, f"engine I/O tensors {names} do not match config")
        if engine.num_optimization_profiles != len(plan):
            raise ModelLoadError(self.model_path, "engine has a different number of profiles")
        stream = self._stream
        for index, p in enumerate(plan):
            # Default allocation strategy: each context holds activation memory for the largest
            # profile (small for this model); one context per profile avoids switching per batch.
            context = engine.create_execution_context()
            if not context.set_optimization_profile_async(index, stream.handle):
                raise ModelLoadError(self.model_path, f"cannot select profile {index}")
            host_in = {n: cuda.pagelocked_empty(p.max, dtypes[n]) for n in self.config.inputs}
            device_in = {n: cuda.mem_alloc(a.nbytes) for n, a in host_in.items()}
            host_out = cuda.pagelocked_empty((p.max[0], self.config.output_dim), dtypes[out])
            device_out = cuda.mem_alloc(host_out.nbytes)
            for n in self.config.inputs:
                context.set_input_shape(n, p.max)
                # Buffers never move: their addresses are set once, a batch uses their prefix.
                context.set_tensor_address(n, int(device_in[n]))
            context.set_tensor_address(out, int(device_out))
            if tuple(context.get_tensor_shape(out)) != host_out.shape:
                raise ModelLoadError(
                    self.model_path,
                    f"engine output is {tuple(context.get_tensor_shape(out))} at batch "
                    f"{p.max}, expected {host_out.shape}",
                )
            self._slots[p.seq_len] = _Slot(index, context, host_in, device_in, host_out,
                                           device_out)
        stream.synchronize()

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        batch, seq_len = input_ids.shape
        slot = self._slots[seq_len]  # supported_shapes() already checked the shape
        cuda, stream = self._cuda, self._stream
        with self._lock, self._current():
            try:
                for name, arr in zip(self.config.inputs, (input_ids, attention_mask), strict=True):
                    host = slot.host_in[name][:batch]
                    host[...] = arr  # casts if the engine took int32
                    if not slot.context.set_input_shape(name, (batch, seq_len)):
                        raise BackendError(f"{self.label}: rejected shape {(batch, seq_len)}")
                    cuda.memcpy_htod_async(slot.device_in[name], host, stream)
                if not slot.context.execute_async_v3(stream.handle):
                    raise BackendError(f"{self.label}: execute_async_v3 failed (see log)")
                cuda.memcpy_dtoh_async(slot.host_out[:batch], slot.device_out, stream)
                stream.synchronize()
            except cuda.Error as exc:
                raise BackendError(f"{self.label}: CUDA error ({exc})") from exc
            return np.array(slot.host_out[:batch], dtype=np.float32, copy=True)

    def _release(self) -> None:
        """Free device buffers, contexts, engine and stream in the CUDA context, then let go of
        the retained primary context. Safe on a half-finished load."""
        if self._ctx is None:
            return
        with self._current():
            for slot in self._slots.values():
                for alloc in (*slot.device_in.values(), slot.device_out):
                    alloc.free()
            self._slots.clear()  # execution contexts go first, then the engine, then the runtime
            self._engine = None
            self._runtime = None
            self._stream = None
        self._ctx.detach()
        self._ctx = None

    def _close(self) -> None:
        with self._lock:
            self._release()
