"""Model backends behind one interface (``base.Backend``) and the factory that picks one."""

from __future__ import annotations

from pathlib import Path

from gpu_runner.backends.base import (
    Backend,
    BackendError,
    BackendInputError,
    BackendOutputError,
    BackendUnavailable,
    BucketShape,
    BucketShapes,
)
from gpu_runner.backends.ort import OnnxRuntimeBackend
from gpu_runner.backends.ov import OpenVinoBackend, Precision, cpu_supports_bf16
from gpu_runner.backends.simulated import SimulatedBackend
from gpu_runner.backends.trt import TensorRTBackend
from models.config import ModelConfig

KINDS = (
    "auto", "onnxruntime", "openvino", "openvino-f32", "openvino-bf16", "tensorrt", "tensorrt-fp32",
    "simulated",
)

OPENVINO_PRECISION: dict[str, Precision] = {
    "openvino": "auto", "openvino-f32": "fp32", "openvino-bf16": "bf16"
}


def create_backend(
    kind: str,
    version_dir: Path,
    config: ModelConfig,
    *,
    threads: int | None = None,
    streams: int | None = None,
    sim_batch_ms: float = 0.0,
    sim_token_us: float = 0.0,
) -> Backend:
    """Build and load a backend. Kinds: "onnxruntime" (fp32), "openvino" (bf16 where the CPU
    has it, else f32), "openvino-f32", "openvino-bf16", "tensorrt" (NVIDIA GPU, fp16),
    "tensorrt-fp32", "simulated" (no model: a device that sleeps ``sim_batch_ms`` +
    ``sim_token_us`` per padded token and returns token-derived vectors; benchmarks and tests
    only) and "auto" (see ``select``; CPU only, it never picks TensorRT or the simulation).

    ``streams`` applies to OpenVINO only (see ``OpenVinoBackend``). The result is loaded
    (``load()`` is idempotent); call ``warmup()`` before serving.
    """
    backend: Backend
    match kind:
        case "auto":
            from gpu_runner.backends.select import select_auto

            return select_auto(version_dir, config, threads=threads, streams=streams)
        case "onnxruntime":
            backend = OnnxRuntimeBackend(version_dir, config, threads=threads)
        case "openvino" | "openvino-f32" | "openvino-bf16":
            backend = OpenVinoBackend(version_dir, config, threads=threads, streams=streams,
                                      precision=OPENVINO_PRECISION[kind])
        case "tensorrt":
            backend = TensorRTBackend(version_dir, config, precision="fp16")
        case "tensorrt-fp32":
            backend = TensorRTBackend(version_dir, config, precision="fp32")
        case "simulated":
            backend = SimulatedBackend(version_dir, config, batch_ms=sim_batch_ms,
                                       token_us=sim_token_us)
        case _:
            raise ValueError(f"unknown backend kind {kind!r}; expected one of {KINDS}")
    backend.load()
    return backend


__all__ = [
    "KINDS",
    "Backend",
    "BackendError",
    "BackendInputError",
    "BackendOutputError",
    "BackendUnavailable",
    "BucketShape",
    "BucketShapes",
    "OnnxRuntimeBackend",
    "OpenVinoBackend",
    "SimulatedBackend",
    "TensorRTBackend",
    "cpu_supports_bf16",
    "create_backend",
]
