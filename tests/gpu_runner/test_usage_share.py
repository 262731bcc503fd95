"""A batch's inference time is attributed to its items by padded tokens, in whole
microseconds that add up to the batch's time exactly."""

from __future__ import annotations

from gpu_runner.infer import share_by_tokens


def test_equal_padding_splits_the_time_equally_and_the_parts_add_up() -> None:
    shares = share_by_tokens(0.001, [128] * 3)
    assert sum(shares) == 1000 and max(shares) - min(shares) <= 1


def test_an_item_padded_twice_as_long_gets_twice_the_time() -> None:
    assert share_by_tokens(0.003, [64, 128]) == [1000, 2000]


def test_no_padded_tokens_cost_nothing() -> None:
    assert share_by_tokens(0.5, []) == [] and share_by_tokens(0.5, [0, 0]) == [0, 0]
