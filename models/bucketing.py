"""Sequence-length buckets: which padded length an item gets, and padding a batch to it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_ID = 0


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= ``length``; ``ValueError`` when it exceeds the largest."""
    for bucket in buckets:
        if bucket >= length:
            return bucket
    raise ValueError(f"sequence of {length} tokens exceeds the largest bucket {buckets[-1]}")


def pad_batch(ids: Sequence[Sequence[int]], bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into int64 ``(input_ids, attention_mask)`` of shape [B, bucket]."""
    input_ids = np.full((len(ids), bucket), PAD_ID, dtype=np.int64)
    mask = np.zeros((len(ids), bucket), dtype=np.int64)
    for row, seq in enumerate(ids):
        n = len(seq)
        if n > bucket:
            raise ValueError(f"row {row} has {n} tokens, more than bucket {bucket}")
        input_ids[row, :n] = seq
        mask[row, :n] = 1
    return input_ids, mask


def padding_ratio(lengths: Sequence[int], padded_len: int) -> float:
    """Padded tokens over real tokens for one batch (1.0 = no padding)."""
    return len(lengths) * padded_len / max(1, sum(lengths))
