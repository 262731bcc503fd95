"""How an item's output is stored in the result store: one codec, written by the runner and
read by the gateway, so the two can never disagree about the bytes in ``ItemRecord.output``.

The stored form is packed: a version byte, the token count, a flags byte (truncated; made by a
simulated device), then the
embedding as little-endian float32 (1,545 bytes for 384 dimensions, against ~3,460 as a
msgpack list of doubles, and no per-float encoding on the runner's hot path). The values are
the backend's float32 outputs exactly, so reading them back as Python floats gives what the
old list form held. Rows written in the old form (a msgpack map) are still read.
"""

from __future__ import annotations

import struct

import msgspec
import numpy as np

from schemas.api import EmbeddingOutput

_PACKED = 1
"""Version byte of the packed form (an old msgpack map starts with 0x8X or 0xde, never 1)."""
_HEADER = struct.Struct("<BIB")
_TRUNCATED, _SIMULATED = 1, 2
_LEGACY = msgspec.msgpack.Decoder(EmbeddingOutput)


def pack_embedding(vector: np.ndarray, num_tokens: int, truncated: bool, *,
                   simulated: bool = False) -> bytes:
    """The stored bytes of one embedding (float32 values kept exactly); ``simulated`` marks
    an output of the simulated device (no model ran), which the results then say."""
    data = np.ascontiguousarray(vector, dtype="<f4")
    flags = (_TRUNCATED if truncated else 0) | (_SIMULATED if simulated else 0)
    return _HEADER.pack(_PACKED, num_tokens, flags) + data.tobytes()


def encode_output(output: EmbeddingOutput) -> bytes:
    """The stored bytes of one item's output."""
    return pack_embedding(np.asarray(output.embedding, dtype=np.float32), output.num_tokens,
                          output.truncated)


def decode_output(data: bytes) -> EmbeddingOutput:
    """The output stored by ``encode_output``/``pack_embedding`` (or by an older runner)."""
    if data[:1] == b"\x01":
        _, num_tokens, flags = _HEADER.unpack_from(data)
        vector = np.frombuffer(data, dtype="<f4", offset=_HEADER.size)
        return EmbeddingOutput(vector.tolist(), num_tokens, bool(flags & _TRUNCATED))
    return _LEGACY.decode(data)


def is_simulated(data: bytes) -> bool:
    """Whether the stored output came from the simulated device."""
    return data[:1] == b"\x01" and bool(_HEADER.unpack_from(data)[2] & _SIMULATED)
