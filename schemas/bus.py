"""Messages on the bus (msgpack). Bus messages tolerate unknown fields: rolling deploys."""

from __future__ import annotations

import msgspec


class ChunkItem(msgspec.Struct, frozen=True, array_like=True):
    """One input of a chunk: its index in the job, its text and the client's id."""

    index: int
    text: str
    id: str | None = None


class Chunk(msgspec.Struct, frozen=True):
    """A slice of a job (<= ~256 items) on ``inferq.jobs.<model>.<priority>.<tenant>``."""

    job_id: str
    chunk: int
    tenant: str
    model: str
    model_version: int
    priority: str
    created_at: float
    items: list[ChunkItem]
    deadline: float | None = None
    traceparent: str | None = None


class BatchItem(msgspec.Struct, frozen=True, array_like=True):
    """One item of a formed batch: token ids unpadded; the runner pads to the bucket."""

    job_id: str
    index: int
    token_ids: list[int]
    truncated: bool = False
    client_id: str | None = None
    enqueued_at: float = 0.0


class FailedItem(msgspec.Struct, frozen=True, array_like=True):
    """An item that failed before inference (e.g. empty text): the runner records it."""

    job_id: str
    index: int
    code: str
    message: str
    client_id: str | None = None


class Batch(msgspec.Struct, frozen=True):
    """A shape-bucketed batch on ``inferq.batches.<model>.<version>`` (``.interactive`` when
    urgent)."""

    batch_id: str
    model: str
    model_version: int
    bucket: int
    items: list[BatchItem]
    failed: list[FailedItem] = []
    formed_at: float = 0.0
    deadlines: dict[str, float] = {}
    traces: dict[str, str] = {}
    """W3C traceparent per job id (a batch serves several jobs; the NATS header names the
    first job's)."""
    urgent: bool = False
    """Led by interactive items and published on the urgent subject, which runners pull
    ahead of the batch work they hold (``subjects.batch_subject(..., urgent=True)``)."""


class DeadLetter(msgspec.Struct, frozen=True):
    """A batch that exhausted its deliveries, recorded before its items are failed."""

    batch_id: str
    model: str
    model_version: int
    deliveries: int
    reason: str
    batch: bytes


CHUNK_ENCODER = msgspec.msgpack.Encoder()
CHUNK_DECODER = msgspec.msgpack.Decoder(Chunk)
BATCH_DECODER = msgspec.msgpack.Decoder(Batch)


def encode(msg: msgspec.Struct) -> bytes:
    """A bus message as msgpack (one encoder for every message type)."""
    return CHUNK_ENCODER.encode(msg)
