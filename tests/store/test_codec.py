"""The stored form of an item's output: float32 kept exactly, old rows still readable."""

from __future__ import annotations

import msgspec
import numpy as np

from schemas.api import EmbeddingOutput
from store.results.codec import decode_output, encode_output, is_simulated, pack_embedding


def test_a_packed_embedding_reads_back_as_the_same_float32_values() -> None:
    vec = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    data = pack_embedding(vec, 17, True)
    assert len(data) == 6 + 384 * 4
    out = decode_output(data)
    assert out == EmbeddingOutput(vec.tolist(), 17, True)
    assert out.embedding == [float(x) for x in vec]


def test_encode_output_round_trips() -> None:
    out = EmbeddingOutput([0.6, 0.8], 3)
    assert decode_output(encode_output(out)) == EmbeddingOutput(
        np.float32([0.6, 0.8]).tolist(), 3, False)


def test_rows_written_as_msgpack_maps_by_older_runners_still_decode() -> None:
    old = msgspec.msgpack.encode(EmbeddingOutput([0.25, -0.5], 4, False))
    assert decode_output(old) == EmbeddingOutput([0.25, -0.5], 4, False)


def test_an_output_of_the_simulated_device_says_so() -> None:
    vec = np.ones(4, dtype=np.float32) / 2
    assert is_simulated(pack_embedding(vec, 3, False, simulated=True))
    assert decode_output(pack_embedding(vec, 3, True, simulated=True)).truncated
    assert not is_simulated(pack_embedding(vec, 3, True))
    assert not is_simulated(msgspec.msgpack.encode(EmbeddingOutput([0.5], 3)))
