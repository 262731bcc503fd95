"""The simulated accelerator: outputs derived from each row's own tokens, time spent asleep."""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpu_runner.backends.simulated import SimulatedBackend, token_vectors
from models.bucketing import pad_batch
from models.tokenize import TextTokenizer


def padded(tok: TextTokenizer, texts: list[str], seq_len: int):
    return pad_batch([e.ids for e in tok.encode(texts)], seq_len)


def test_each_row_gets_a_unit_vector_of_its_own_tokens_whatever_the_padding(
        minilm_dir, minilm_config) -> None:
    tok = TextTokenizer.from_dir(minilm_dir, minilm_config)
    texts = ["a cat", "a dog", "a cat", "the quick brown fox"]
    ids16, mask16 = padded(tok, texts, 16)
    ids64, mask64 = padded(tok, texts, 64)
    v16 = token_vectors(ids16, mask16, 384)
    v64 = token_vectors(ids64, mask64, 384)
    assert v16.dtype == np.float32 and v16.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(v16, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v16, v64)  # padding never changes a row
    np.testing.assert_array_equal(v16[0], v16[2])  # identical texts, identical vectors
    assert np.abs(v16[0] - v16[1]).max() > 0.05  # different texts, different vectors
    # A row's vector does not depend on its neighbours in the batch.
    alone = token_vectors(*padded(tok, ["a dog"], 16), 384)
    np.testing.assert_array_equal(alone[0], v16[1])


def test_a_batch_takes_the_configured_device_time(minilm_dir, minilm_config) -> None:
    backend = SimulatedBackend(minilm_dir, minilm_config, batch_ms=20, token_us=10)
    backend.load()
    ids = np.full((8, 128), 1000, dtype=np.int64)
    assert backend.device_seconds(8, 128) == pytest.approx(0.02 + 8 * 128 * 10e-6)
    started = time.perf_counter()
    out = backend.run(ids, np.ones_like(ids))
    assert time.perf_counter() - started >= backend.device_seconds(8, 128)
    assert out.shape == (8, 384)
    assert backend.label == "simulated/simulated"


def test_negative_device_times_are_refused(minilm_dir, minilm_config) -> None:
    with pytest.raises(ValueError):
        SimulatedBackend(minilm_dir, minilm_config, batch_ms=-1)
