"""The model-backend interface: load a model version, run padded batches, report shapes.

A backend is driven by one runner thread: ``load()`` once, ``warmup()``, then ``run()`` per
batch, ``close()`` on shutdown. ``supported_shapes()`` tells the batch former which shapes a
backend accepts, so that a fixed-shape engine (TensorRT: one optimisation profile per
bucket, device buffers allocated per bucket) fits the same interface as dynamic-shape CPU
runtimes.
"""

from __future__ import annotations

import abc
from pathlib import Path
from types import TracebackType
from typing import ClassVar

import msgspec
import numpy as np

from models.config import MODEL_FILE, ModelConfig
from models.errors import ModelLoadError
from schemas.errors import ErrorCode


class BackendError(Exception):
    """Root of backend failures while running a batch (not loading: that is ModelLoadError)."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    retryable: bool = True


class BackendInputError(BackendError):
    """The batch handed to ``run()`` has the wrong dtype or a shape the backend cannot take."""

    retryable = False


class BackendOutputError(BackendError):
    """The graph returned something other than finite float32 [batch, output_dim]."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this machine (e.g. bf16 forced on a CPU without bf16)."""

    retryable = False


class BucketShape(msgspec.Struct, frozen=True):
    """One padded sequence length and the batch sizes a backend runs it at."""

    seq_len: int
    max_batch: int
    """Largest batch the batch former should send (the token budget / row cap of the config)."""
    opt_batch: int
    """Batch size the backend is tuned for (TensorRT profile ``opt``; informational on CPU)."""


class BucketShapes(msgspec.Struct, frozen=True):
    """Every shape a backend is prepared for, by ascending ``seq_len``."""

    shapes: tuple[BucketShape, ...]
    exact: bool = False
    """True: a batch must have exactly a bucket's seq_len and at most its max_batch (fixed-shape
    engines with pre-allocated buffers). False: any seq_len up to the largest bucket, any
    batch size (dynamic-shape runtimes; the budgets are then advice for latency)."""

    @classmethod
    def from_config(cls, config: ModelConfig, *, exact: bool = False) -> BucketShapes:
        """One shape per configured bucket, each at the config's batch cap for it."""
        shapes = tuple(
            BucketShape(
                seq_len=b, max_batch=config.max_batch_for(b), opt_batch=config.max_batch_for(b)
            )
            for b in config.buckets
        )
        return cls(shapes=shapes, exact=exact)

    @property
    def buckets(self) -> list[int]:
        """The sequence lengths, ascending."""
        return [s.seq_len for s in self.shapes]

    def accepts(self, batch: int, seq_len: int) -> bool:
        """Whether a [batch, seq_len] input may be run."""
        if batch < 1 or seq_len < 1:
            return False
        if not self.exact:
            return seq_len <= self.shapes[-1].seq_len
        return any(s.seq_len == seq_len and batch <= s.max_batch for s in self.shapes)


class Backend(abc.ABC):
    """One loaded model version on one runtime; ``run()`` maps padded ids to embeddings."""

    name: ClassVar[str]
    precision: str
    simulated: ClassVar[bool] = False
    """True for a backend that runs no model (its results say so)."""
    ahead: ClassVar[int] = 0
    """Batches a runner keeps launched beyond ``concurrency``, waiting at the device
    (``gpu_runner.gate``) so that one starts the moment another ends. A device that works
    apart from the CPU (a GPU, the simulated device) takes 1: its batches take a few ms, and
    between two of them the device would otherwise wait on the runner's event loop (write-back,
    the next batch's hand-over). A CPU runtime takes 0: its inference shares the cores the loop
    runs on, and a batch queued ahead would hold an urgent one back by a whole CPU batch."""

    def __init__(self, version_dir: Path, config: ModelConfig, *, threads: int | None = None):
        self.version_dir = Path(version_dir)
        self.config = config
        self.threads = threads
        self._loaded = False

    @property
    def model_path(self) -> Path:
        """The ONNX graph of this version (``model.onnx``)."""
        return self.version_dir / MODEL_FILE

    @property
    def label(self) -> str:
        """``name/precision``, for logs and metrics."""
        return f"{self.name}/{self.precision}"

    def load(self) -> None:
        """Load and compile the graph (idempotent); ``ModelLoadError`` names the bad file."""
        if self._loaded:
            return
        if not self.model_path.is_file():
            raise ModelLoadError(self.model_path, "model file is missing")
        self._load()
        self._loaded = True

    def supported_shapes(self) -> BucketShapes:
        """The shapes this backend is prepared for (dynamic by default)."""
        return BucketShapes.from_config(self.config)

    def warmup(self) -> None:
        """Run shapes once so first real batches pay no set-up cost: every bucket at its
        largest batch on a fixed-shape engine (each bucket is its own profile and buffers); on
        a dynamic-shape runtime only the smallest and the largest bucket, which load the
        weights and size the largest buffers. It keeps nothing per bucket worth warming: a
        runner sends each batch at its longest row's width, not the bucket's, and a shape's
        first run costs OpenVINO a few ms more than its next (28 buckets took 6 s, 2 take 0.4)."""
        shapes = self.supported_shapes()
        for shape in shapes.shapes if shapes.exact else (shapes.shapes[0], shapes.shapes[-1]):
            ids = np.full((shape.max_batch, shape.seq_len), 1000, dtype=np.int64)
            ids[:, 0], ids[:, -1] = 101, 102
            self.run(ids, np.ones_like(ids))

    @property
    def concurrency(self) -> int:
        """How many ``run(..., shared=True)`` calls may be in flight at once, each from its
        own thread on its own share of the device (1: one batch at a time)."""
        return 1

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray, *,
            shared: bool = False) -> np.ndarray:
        """Embed one padded batch: int64 [B, S] ids and mask -> float32 [B, output_dim].

        ``shared``: other batches run beside this one (at most ``concurrency`` in all), so it
        runs on one share of the device; else it may use all of it. A backend whose
        ``concurrency`` is 1 ignores it."""
        if not self._loaded:
            raise BackendError(f"{self.label}: run() before load()")
        for arg, arr in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.int64 or arr.ndim != 2:
                raise BackendInputError(f"{arg} must be an int64 [batch, seq] array")
        if input_ids.shape != attention_mask.shape:
            raise BackendInputError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} differ"
            )
        batch, seq_len = input_ids.shape
        if not self.supported_shapes().accepts(batch, seq_len):
            raise BackendInputError(f"{self.label} does not accept shape [{batch}, {seq_len}]")
        if shared and self.concurrency > 1:
            out = self._infer_shared(input_ids, attention_mask)
        else:
            out = self._infer(input_ids, attention_mask)
        expected = (batch, self.config.output_dim)
        if not isinstance(out, np.ndarray) or out.shape != expected or out.dtype != np.float32:
            got = getattr(out, "shape", type(out).__name__), getattr(out, "dtype", None)
            raise BackendOutputError(f"{self.label}: expected float32 {expected}, got {got}")
        if not np.isfinite(out).all():
            raise BackendOutputError(f"{self.label}: output holds NaN or infinity")
        return out

    def close(self) -> None:
        """Release the runtime's resources (idempotent)."""
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abc.abstractmethod
    def _load(self) -> None:
        """Create the runtime session for ``self.model_path``; raise ``ModelLoadError``."""

    @abc.abstractmethod
    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Run the graph on validated inputs and return its output."""

    def _infer_shared(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Run on one share of the device beside other batches (``concurrency`` > 1)."""
        raise NotImplementedError(f"{self.label} runs one batch at a time")

    @abc.abstractmethod
    def _close(self) -> None:
        """Drop the runtime session."""
