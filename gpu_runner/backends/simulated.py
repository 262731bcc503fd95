"""A simulated accelerator: no model runs; each batch costs a configured time, spent asleep.

For benchmarks, capacity planning and tests of the control plane at accelerator speed: the
runner thread sleeps ``batch_ms + token_us x padded tokens`` (the CPU stays free, as it does
while a GPU works) and returns deterministic unit vectors derived from each row's own token
ids: identical texts get identical vectors, different texts different ones, and padding never
changes a row's vector. The vectors carry no meaning. ``auto`` never picks this backend; its
name (``simulated``) labels logs, metrics and every result it produces.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gpu_runner.backends.base import Backend
from models.config import ModelConfig

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def token_vectors(input_ids: np.ndarray, attention_mask: np.ndarray, dim: int) -> np.ndarray:
    """Unit float32 [batch, dim] vectors, each a hash of its row's unmasked token ids and their
    positions (a padded position contributes nothing), spread over ``dim`` by splitmix64."""
    seq = input_ids.shape[1]
    words = -(-dim // 4)  # four 16-bit lanes per 64-bit hash
    with np.errstate(over="ignore"):
        mask = attention_mask.astype(np.uint64)
        weights = _mix(np.arange(1, seq + 1, dtype=np.uint64) * _GOLDEN)
        seed = _mix((input_ids.astype(np.uint64) + np.uint64(1)) * weights) * mask
        row_hash = _mix(np.bitwise_xor.reduce(seed, axis=1))
        lanes = np.arange(1, words + 1, dtype=np.uint64) * _GOLDEN
        bits = _mix(row_hash[:, None] + lanes[None, :])
    vec = bits.view(np.uint16)[:, :dim].astype(np.float32) - np.float32(32767.5)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return vec


def nominal_seconds(batch_ms: float, token_us: float, *, batches: float,
                    padded_tokens: float) -> float:
    """What the simulated device costs for ``batches`` batches holding ``padded_tokens`` padded
    tokens in all: ``batch_ms`` per batch plus ``token_us`` per padded token."""
    return batches * batch_ms / 1e3 + padded_tokens * token_us / 1e6


class SimulatedBackend(Backend):
    """Sleeps for the configured device time per batch; returns token-derived unit vectors."""

    name = "simulated"
    precision = "simulated"
    simulated = True
    ahead = 1

    def __init__(self, version_dir: Path, config: ModelConfig, *, batch_ms: float = 0.0,
                 token_us: float = 0.0) -> None:
        super().__init__(version_dir, config, threads=None)
        if batch_ms < 0 or token_us < 0:
            raise ValueError("simulated device times must be >= 0")
        self.batch_ms = batch_ms
        self.token_us = token_us

    def device_seconds(self, batch: int, seq_len: int) -> float:
        """The time the simulated device spends on a [batch, seq_len] input."""
        return nominal_seconds(self.batch_ms, self.token_us, batches=1,
                               padded_tokens=batch * seq_len)

    def warmup(self) -> None:
        """Nothing to warm: the simulated device has no first-batch cost."""

    def _load(self) -> None:
        pass

    def _infer(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        out = token_vectors(input_ids, attention_mask, self.config.output_dim)
        remaining = self.device_seconds(*input_ids.shape) - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)
        return out

    def _close(self) -> None:
        pass
