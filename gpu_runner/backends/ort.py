"""ONNX Runtime on CPU (fp32): the reference backend every other one is checked against."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from gpu_runner.backends.base import Backend
from models.config import ModelConfig
from models.errors import ModelLoadError

Optimization = Literal["disable", "basic", "extended", "all"]

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxRuntimeBackend(Backend):
    """``CPUExecutionProvider`` with ``ORT_ENABLE_ALL`` graph optimisation by default.

    ``optimized_cache``: a folder where the optimised graph is saved once and reloaded on later
    starts (keyed by model size/mtime, ORT version and machine, since ENABLE_ALL output can
    hold CPU-specific layouts).
    """

    name = "onnxruntime"
    precision = "fp32"

    def __init__(
        self,
        version_dir: Path,
        config: ModelConfig,
        *,
        threads: int | None = None,
        optimization: Optimization = "all",
        optimized_cache: Path | None = None,
    ) -> None:
        super().__init__(version_dir, config, threads=threads)
        self.optimization = optimization
        self.optimized_cache = optimized_cache
        self._session: ort.InferenceSession | None = None

    def _session_options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _LEVELS[self.optimization]
        opts.intra_op_num_threads = self.threads or 0  # 0 = one per physical core
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # warnings about saving ENABLE_ALL graphs are expected
        return opts

    def _load(self) -> None:
        opts = self._session_options()
        source = self.model_path
        cached = self._cached_path()
        if cached is not None and cached.is_file():
            source = cached
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            opts.optimized_model_filepath = str(cached)
        try:
            session = ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... classes
            raise ModelLoadError(source, f"ONNX Runtime cannot load the graph ({exc})") from exc
        inputs = sorted(i.name for i in session.get_inputs())
        outputs = [o.name for o in session.get_outputs()]
        if inputs != sorted(self.config.inputs) or self.config.output_name not in outputs:
            raise ModelLoadError(
                source,
                f"graph has inputs {inputs} and outputs {outputs}; config expects inputs "
                f"{self.config.inputs} and output {self.config.output_name!r}",
            )
        self._session = session

    def _cached_path(self) -> Path | None:
        if self.optimized_cache is None or self.optimization == "disable":
            return None
        stat = self.model_path.stat()
        key = f"{stat.st_size}:{stat.st_mtime_ns}:{ort.__version__}:{platform.machine()}"
        digest = hashlib.sha256(f"{self.model_path.resolve()}:{key}".encode()).hexdigest()[:16]
        return self.optimized_cache / f"{self.config.name}-{self.config.version}-{digest}.onnx"

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        assert self._session is not None
        ids_name, mask_name = self.config.inputs
        (out,) = self._session.run(
            [self.config.output_name], {ids_name: input_ids, mask_name: attention_mask}
        )
        return out

    def _close(self) -> None:
        self._session = None
