"""Bucket choice and padding."""

from __future__ import annotations

import numpy as np
import pytest

from models.bucketing import bucket_for, pad_batch, padding_ratio
from models.config import ModelConfig

BUCKETS = [16, 32, 64, 128, 256]


@pytest.mark.parametrize(
    ("length", "bucket"), [(1, 16), (16, 16), (17, 32), (64, 64), (65, 128), (256, 256)]
)
def test_bucket_for_picks_the_smallest_that_fits(length: int, bucket: int) -> None:
    assert bucket_for(length, BUCKETS) == bucket


def test_bucket_for_rejects_overlong_sequences() -> None:
    with pytest.raises(ValueError, match="exceeds the largest bucket 256"):
        bucket_for(257, BUCKETS)


def test_pad_batch_right_pads_with_zeros() -> None:
    ids, mask = pad_batch([[101, 5, 102], [101, 102]], 4)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.tolist() == [[101, 5, 102, 0], [101, 102, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]


def test_pad_batch_refuses_rows_longer_than_the_bucket() -> None:
    with pytest.raises(ValueError, match="row 1 has 5 tokens"):
        pad_batch([[1], [1, 2, 3, 4, 5]], 4)


def test_padding_ratio_and_token_budget() -> None:
    assert padding_ratio([8, 16], 16) == pytest.approx(32 / 24)
    config = ModelConfig(name="m", version=1, output_dim=4)
    assert [config.max_batch_for(b) for b in BUCKETS] == [64, 64, 32, 16, 8]
