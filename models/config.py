"""``ModelConfig``: the small ``config.json`` beside each model version, validated on load.

Everything the scheduler and runners need to shape batches for a model lives here, so a
user-registered model is fully described by its folder (see docs/models.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from models.errors import ModelLoadError

# The three files of a version folder: <repo>/<name>/<version>/.
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"


class ModelConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Shape and batching contract of one version: ``<repo>/<name>/<version>/config.json``."""

    name: str
    """Model name; must equal the folder name."""
    version: int
    """Version number; must equal the version folder name."""
    task: Literal["embedding"] = "embedding"
    """Only sentence embeddings for now."""
    inputs: list[str] = msgspec.field(default_factory=lambda: ["input_ids", "attention_mask"])
    """Graph input names, in the order ``(input_ids, attention_mask)``; both int64 [batch, seq]."""
    output_name: str = "embedding"
    """Graph output holding float32 [batch, output_dim]."""
    output_dim: int
    """Width of one embedding."""
    max_seq_len: int = 256
    """Longest sequence (with special tokens); longer texts are truncated to it."""
    buckets: list[int] = msgspec.field(
        default_factory=lambda: [8, 10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 72,
                                 80, 88, 96, 112, 128, 144, 160, 176, 192, 224, 256])
    """Padded sequence lengths a batch may have; fewer buckets = fewer shapes, more padding."""
    max_batch_tokens: int = 2048
    """Budget of padded tokens (rows x bucket) per batch: the unit the accelerator pays for."""
    max_batch_size: int = 64
    """Cap on rows per batch, whatever the bucket (bounds latency of short-text batches)."""
    pooling: Literal["mean"] = "mean"
    """How the graph pools token states (informational: pooling is inside the graph)."""
    normalize: bool = True
    """Whether the graph L2-normalises its output."""

    def validate(self) -> list[str]:
        """Return every inconsistency (empty when the config is usable)."""
        problems: list[str] = []
        if len(self.inputs) != 2:
            problems.append(f"inputs must name exactly 2 graph inputs, got {self.inputs}")
        if self.output_dim <= 0:
            problems.append(f"output_dim must be > 0, got {self.output_dim}")
        if self.max_seq_len < 3:
            problems.append(f"max_seq_len must be >= 3, got {self.max_seq_len}")
        if not self.buckets:
            problems.append("buckets must not be empty")
        else:
            if any(b <= 0 for b in self.buckets):
                problems.append(f"buckets must be positive, got {self.buckets}")
            if sorted(set(self.buckets)) != self.buckets:
                problems.append(f"buckets must be strictly increasing, got {self.buckets}")
            if self.buckets[-1] != self.max_seq_len:
                problems.append(
                    f"last bucket must equal max_seq_len ({self.max_seq_len}), got {self.buckets}"
                )
            if self.max_batch_tokens < self.buckets[-1]:
                problems.append(
                    f"max_batch_tokens ({self.max_batch_tokens}) must fit one row of the "
                    f"largest bucket ({self.buckets[-1]})"
                )
        if self.max_batch_size <= 0:
            problems.append(f"max_batch_size must be > 0, got {self.max_batch_size}")
        return problems

    def max_batch_for(self, bucket: int) -> int:
        """Rows one batch of ``bucket`` may hold (see ``batch_capacity``)."""
        return batch_capacity(bucket, max_batch_tokens=self.max_batch_tokens,
                              max_batch_size=self.max_batch_size)


def batch_capacity(bucket: int, *, max_batch_tokens: int, max_batch_size: int) -> int:
    """Rows one batch of ``bucket`` may hold: the padded-token budget, capped by the row count,
    and never less than one row. The one rule the scheduler forms by and the runners build for."""
    return max(1, min(max_batch_size, max_batch_tokens // bucket))


_decoder = msgspec.json.Decoder(ModelConfig)


def load_config(path: Path) -> ModelConfig:
    """Read and validate ``config.json``; any problem is a ``ModelLoadError`` naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError(path, "config file is missing") from None
    except OSError as exc:
        raise ModelLoadError(path, f"config file is unreadable ({exc})") from exc
    try:
        config = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ModelLoadError(path, f"invalid config ({exc})") from exc
    problems = config.validate()
    if problems:
        raise ModelLoadError(path, "invalid config: " + "; ".join(problems))
    return config


def write_config(path: Path, config: ModelConfig) -> None:
    """Write ``config`` as indented JSON (it is meant to be read and edited by people)."""
    path.write_bytes(msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n")
