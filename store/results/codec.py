"""How an item's output is stored in the result store: one codec, written by the runner and
read by the gateway, so the two can never disagree about the bytes in ``ItemRecord.output``."""

from __future__ import annotations

import msgspec

from schemas.api import EmbeddingOutput

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(EmbeddingOutput)


def encode_output(output: EmbeddingOutput) -> bytes:
    """The stored bytes of one item's output."""
    return _ENCODER.encode(output)


def decode_output(data: bytes) -> EmbeddingOutput:
    """The output stored by ``encode_output``."""
    return _DECODER.decode(data)
