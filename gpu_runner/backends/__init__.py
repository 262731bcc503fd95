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
from gpu_runner.backends.ov import OpenVinoBackend, cpu_supports_bf16
from inferq.models.config import ModelConfig

KINDS = ("auto", "onnxruntime", "openvino", "openvino-f32", "openvino-bf16")


def create_backend(
    kind: str, version_dir: Path, config: ModelConfig, *, threads: int | None = None
) -> Backend:
    """Build and load a backend. Kinds: "onnxruntime" (fp32), "openvino" (bf16 where the CPU
    has it, else f32), "openvino-f32", "openvino-bf16", and "auto" (see ``select``).

    The result is loaded (``load()`` is idempotent); call ``warmup()`` before serving.
    """
    backend: Backend
    match kind:
        case "auto":
            from gpu_runner.backends.select import select_auto

            return select_auto(version_dir, config, threads=threads)
        case "onnxruntime":
            backend = OnnxRuntimeBackend(version_dir, config, threads=threads)
        case "openvino":
            backend = OpenVinoBackend(version_dir, config, threads=threads, precision="auto")
        case "openvino-f32":
            backend = OpenVinoBackend(version_dir, config, threads=threads, precision="fp32")
        case "openvino-bf16":
            backend = OpenVinoBackend(version_dir, config, threads=threads, precision="bf16")
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
    "cpu_supports_bf16",
    "create_backend",
]
