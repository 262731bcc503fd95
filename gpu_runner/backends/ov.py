"""OpenVINO on CPU, in bf16 where the CPU has AMX / AVX-512 BF16, else f32.

Two streams by default where there are at least two inference threads: a large batch's rows
are split between two independent infer requests, each with its share of the threads,
instead of one request whose threads meet at every layer. Small batches, where a half on
fewer threads is slower than the whole on all of them, run whole on a second, single-stream
compilation of the graph. Measured on the 2-core reference machine with
``python bench/bench_contention.py`` and ``bench/bench_service.py`` (figures in
docs/models.md).

Beside that split, the same streams run whole batches side by side: ``run(..., shared=True)``
lends one stream's request to each caller (``concurrency`` = the streams), so a runner keeps two
batches in flight without a barrier between them — one stream slowed by a neighbour process no
longer idles the other, and neither waits for the slower half of a split. Measured on the same
batches (f32, 2 cores, ``bench/bench_contention.py``): beside a neighbour busy a third of a
core, 189 items/s side by side against 163 split; alone, about the same.

The infer requests are reused, each lent to one caller at a time; concurrent callers wait for
the requests they need.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import openvino as ov

from gpu_runner.backends.base import Backend, BackendUnavailable
from models.config import ModelConfig
from models.errors import ModelLoadError

Precision = Literal["auto", "fp32", "bf16"]

SPLIT_MIN_TOKENS = 256
"""Padded tokens below which a batch runs whole on the single-stream compilation. Measured on
2 cores (rows x seq): halves of 4x16 and 8x16 took 1.15x and 1.05x as long as the whole,
16x16 the same, 2x64 and up 0.92x."""


def split_count(rows: int, seq_len: int, streams: int) -> int:
    """How many of the ``streams`` infer requests a [rows, seq_len] batch is split between
    (1: it runs whole, on the single-stream compilation)."""
    if rows * seq_len < SPLIT_MIN_TOKENS:
        return 1
    return max(1, min(rows, streams))


def inference_threads(threads: int | None) -> int:
    """The threads asked for, or (``None``) every core this process may use."""
    return threads or len(os.sched_getaffinity(0))


def default_streams(threads: int | None) -> int:
    """2 where there are at least two inference threads."""
    return 2 if inference_threads(threads) >= 2 else 1


def cpu_supports_bf16(core: ov.Core | None = None) -> bool:
    """True when OpenVINO's CPU plugin reports native BF16 (AMX or AVX-512 BF16)."""
    core = core or ov.Core()
    try:
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


class RequestPool:
    """Infer requests lent to one caller at a time; a caller wanting more than are free waits."""

    def __init__(self, requests: list[ov.InferRequest] | None = None):
        self._free = list(requests or [])
        self.size = len(self._free)
        self._changed = threading.Condition()

    @contextmanager
    def borrow(self, n: int) -> Iterator[list[ov.InferRequest]]:
        """``n`` requests (at most the pool's size), for the duration of the block."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._free) >= n)
            taken, self._free = self._free[:n], self._free[n:]
        try:
            yield taken
        finally:
            with self._changed:
                self._free.extend(taken)
                self._changed.notify_all()


class OpenVinoBackend(Backend):
    """``ov.Core().read_model(model.onnx)`` compiled for CPU with a precision hint.

    ``precision``: "auto" (bf16 when supported, else fp32), "fp32", or "bf16" (raises
    ``BackendUnavailable`` on a CPU without bf16). ``latency_hint`` uses all cores for one
    request (the single-stream compilation). ``streams``: independent infer requests a large
    batch is split between, each with its share of the threads (``None``: ``default_streams``;
    1: one request, all threads, for everything).
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
        streams: int | None = None,
    ) -> None:
        super().__init__(version_dir, config, threads=threads)
        self.requested_precision = precision
        self.precision = precision
        self.latency_hint = latency_hint
        self.cache_dir = cache_dir
        self.streams = streams or default_streams(threads)
        self._request: ov.InferRequest | None = None
        self._streams = RequestPool()
        self._lock = threading.Lock()
        """Guards the single-stream request."""

    @property
    def split_requests(self) -> int:
        """Infer requests a large batch is split between once loaded (0: none, runs whole)."""
        return self._streams.size

    @property
    def concurrency(self) -> int:
        """Batches that may run side by side, one per stream (1 before loading, or with one
        stream)."""
        return max(1, self._streams.size)

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
        self._request = self._compile(core, model, properties).create_infer_request()
        if self.streams > 1:
            split = {
                "INFERENCE_PRECISION_HINT": properties["INFERENCE_PRECISION_HINT"],
                "NUM_STREAMS": self.streams,
                "INFERENCE_NUM_THREADS": inference_threads(self.threads),
            }
            compiled = self._compile(core, model, split)
            self._streams = RequestPool(
                [compiled.create_infer_request() for _ in range(self.streams)])

    def _compile(self, core: ov.Core, model: ov.Model, properties: dict) -> ov.CompiledModel:
        try:
            return core.compile_model(model, "CPU", properties)
        except Exception as exc:
            raise ModelLoadError(self.model_path, f"OpenVINO cannot compile it ({exc})") from exc

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        n = split_count(*input_ids.shape, self._streams.size)
        if n < 2:
            with self._lock:
                return self._run_whole(input_ids, attention_mask)
        with self._streams.borrow(n) as requests:
            return self._run_split(requests, input_ids, attention_mask)

    def _infer_shared(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """The whole batch on one stream's request, while others run on the other streams."""
        ids_name, mask_name = self.config.inputs
        with self._streams.borrow(1) as [request]:
            request.infer({ids_name: input_ids, mask_name: attention_mask})
            return np.array(request.get_tensor(self.config.output_name).data, copy=True)

    def _run_whole(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        assert self._request is not None
        ids_name, mask_name = self.config.inputs
        self._request.infer({ids_name: input_ids, mask_name: attention_mask})
        # The output tensor is reused by the next infer(): copy it out.
        return np.array(self._request.get_tensor(self.config.output_name).data, copy=True)

    def _run_split(
        self, requests: list[ov.InferRequest], input_ids: np.ndarray, attention_mask: np.ndarray
    ) -> np.ndarray:
        """The batch's rows split evenly between ``requests``, run at once."""
        ids_name, mask_name = self.config.inputs
        n = len(requests)
        parts = zip(np.array_split(input_ids, n), np.array_split(attention_mask, n), requests,
                    strict=True)
        for ids, mask, request in parts:
            request.start_async({ids_name: ids, mask_name: mask})
        outs = []
        for request in requests:
            request.wait()
            outs.append(request.get_tensor(self.config.output_name).data)
        return np.concatenate(outs)  # a copy: the output tensors are reused

    def _close(self) -> None:
        self._request = None
        self._streams = RequestPool()
