"""OpenVINO on CPU, in bf16 where the CPU has AMX / AVX-512 BF16, else f32.

One infer request is reused per backend (a runner drives a backend from one thread); a lock
keeps accidental concurrent callers correct.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Literal

import numpy as np
import openvino as ov

from gpu_runner.backends.base import Backend, BackendUnavailable
from inferq.models.config import ModelConfig
from inferq.models.errors import ModelLoadError

Precision = Literal["auto", "fp32", "bf16"]


def cpu_supports_bf16(core: ov.Core | None = None) -> bool:
    """True when OpenVINO's CPU plugin reports native BF16 (AMX or AVX-512 BF16)."""
    core = core or ov.Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


class OpenVinoBackend(Backend):
    """``ov.Core().read_model(model.onnx)`` compiled for CPU with a precision hint.

    ``precision``: "auto" (bf16 when supported, else fp32), "fp32", or "bf16" (raises
    ``BackendUnavailable`` on a CPU without bf16). ``latency_hint`` uses all cores for one
    request, which suits a runner that executes one batch at a time.
    """

    name = "openvino"

    def __init__(
        self,
        version_dir: Path,
        config: ModelConfig,
        *,
        threads: int | None = None,
        precision: Precision = "auto",
        latency_hint: bool = True,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(version_dir, config, threads=threads)
        self.requested_precision = precision
        self.precision = precision
        self.latency_hint = latency_hint
        self.cache_dir = cache_dir
        self._request: ov.InferRequest | None = None
        self._lock = threading.Lock()

    def _load(self) -> None:
        core = ov.Core()
        bf16 = cpu_supports_bf16(core)
        if self.requested_precision == "bf16" and not bf16:
            raise BackendUnavailable("openvino bf16 requested but this CPU has no native BF16")
        self.precision = (
            "bf16"
            if self.requested_precision == "auto" and bf16
            else ("fp32" if self.requested_precision == "auto" else self.requested_precision)
        )
        properties: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
        }
        if self.latency_hint:
            properties["PERFORMANCE_HINT"] = "LATENCY"
        if self.threads:
            properties["INFERENCE_NUM_THREADS"] = self.threads
        if self.cache_dir is not None:
            core.set_property({"CACHE_DIR": str(self.cache_dir)})
        try:
            model = core.read_model(str(self.model_path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses on parse errors
            raise ModelLoadError(
                self.model_path, f"OpenVINO cannot read the graph ({exc})"
            ) from exc
        inputs = sorted(name for p in model.inputs for name in p.get_names())
        outputs = {name for r in model.outputs for name in r.get_names()}
        if not set(self.config.inputs) <= set(inputs) or self.config.output_name not in outputs:
            raise ModelLoadError(
                self.model_path,
                f"graph has inputs {inputs} and outputs {sorted(outputs)}; config expects inputs "
                f"{self.config.inputs} and output {self.config.output_name!r}",
            )
        try:
            compiled = core.compile_model(model, "CPU", properties)
        except Exception as exc:
            raise ModelLoadError(self.model_path, f"OpenVINO cannot compile it ({exc})") from exc
        self._request = compiled.create_infer_request()

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        assert self._request is not None
        ids_name, mask_name = self.config.inputs
        with self._lock:
            self._request.infer({ids_name: input_ids, mask_name: attention_mask})
            # The output tensor is reused by the next infer(): copy it out.
            return np.array(self._request.get_tensor(self.config.output_name).data, copy=True)

    def _close(self) -> None:
        self._request = None
