"""Chunk intake: decode a chunk, hold it, tokenize its texts, queue its items in the former.

Items the tokenizer rejects (empty text) go into a batch of their own, published at once, so
that they settle their chunk like any other item. A chunk of a job past its deadline is settled
with nothing queued or published: the job-level end fails its items (``past_deadline``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import msgspec
from nats.aio.msg import Msg

from core.tracing import HEADER as TRACEPARENT
from core.tracing import continue_or_start, exporting, record_span
from models.tokenize import Encoded
from scheduler.former import PendingItem
from scheduler.held import ChunkKey, HeldChunk, HeldChunks
from scheduler.pipes import ModelPipe, ModelPipes
from schemas.bus import CHUNK_DECODER, Batch, Chunk, FailedItem
from schemas.states import Priority

log = logging.getLogger("inferq.scheduler")


def decode_chunk(msg: Msg) -> Chunk | None:
    """The chunk in ``msg``; None (logged) when it cannot be scheduled: undecodable, or of a
    priority this version does not know. The caller terminates such a message."""
    try:
        chunk = CHUNK_DECODER.decode(msg.data)
        Priority(chunk.priority)
    except (msgspec.DecodeError, ValueError):
        log.error("undecodable chunk on %s: terminated", msg.subject)
        return None
    return chunk


def trace_for(msg: Msg, chunk: Chunk) -> str | None:
    """The span the chunk's batches carry: a child of its traceparent (NATS header, else the
    chunk body); None when it came without one."""
    incoming = (msg.headers or {}).get(TRACEPARENT) or chunk.traceparent
    return continue_or_start(incoming).header() if incoming else None


def record_formation(held: HeldChunk) -> None:
    """The chunk's batch-formation span, from intake to its ack (every item in a published
    batch), under the span that published the chunk; a no-op unless spans are exported."""
    if not exporting() or held.trace is None:
        return
    chunk = held.chunk
    record_span("scheduler", "form batches", held.trace,
                (held.msg.headers or {}).get(TRACEPARENT) or chunk.traceparent,
                held.held_since_ns, kind="consumer", attributes={
                    "inferq.job_id": chunk.job_id, "inferq.chunk": chunk.chunk,
                    "inferq.items": len(chunk.items), "inferq.tenant": chunk.tenant,
                    "inferq.model": chunk.model, "inferq.priority": chunk.priority})


def past_deadline(chunk: Chunk, wall: float) -> bool:
    """The chunk's job is past its deadline at ``wall``: its items are not run, and nothing
    is written for them here. The gateway's job-level end (scheduled at the deadline when
    the job was accepted) fails every item not yet counted, in the one write order that
    ends the job ``failed`` with ``deadline_exceeded``; failing them one by one here could
    count the job's last item first, ending it by its counts without the deadline's error."""
    return chunk.deadline is not None and wall >= chunk.deadline


def place(pipe: ModelPipe, chunk: Chunk, key: ChunkKey, encoded: list, trace: str | None, *,
          now: float, wall: float) -> None:
    """Queue each tokenized item in the pipe's former; the items the tokenizer rejected go to
    ``pipe.unsent`` as one batch of failed items (created at ``wall``)."""
    failed: list[FailedItem] = []
    priority = Priority(chunk.priority)
    if priority is Priority.INTERACTIVE:
        pipe.interactive_seen = now
    for it, enc in zip(chunk.items, encoded, strict=True):
        if isinstance(enc, Encoded):
            pipe.former.add(PendingItem(chunk.job_id, it.index, enc.ids, priority, now, key,
                                        enc.truncated, it.id))
        else:
            failed.append(FailedItem(chunk.job_id, it.index, enc.code, enc.message, it.id))
    if failed:
        traces = {chunk.job_id: trace} if trace else {}
        batch = Batch(uuid.uuid4().hex, pipe.name, pipe.version, 0, [], failed, wall,
                      traces=traces)
        pipe.unsent.append((batch, key))


class ChunkIntake:
    """Takes pulled chunks into the ledger and the formers."""

    def __init__(self, pipes: ModelPipes, held: HeldChunks):
        self._pipes = pipes
        self._held = held

    async def admit(self, msg: Msg, chunk: Chunk, trace: str | None) -> ModelPipe | None:
        """Hold the chunk and queue its items; returns its pipe, or None when nothing was
        queued: a redelivery of a chunk still held (the first copy is kept; JetStream is told
        we are on it), or a chunk of a job past its deadline, acked with nothing published —
        its items are the job-level end's to fail (``past_deadline``)."""
        key = (chunk.job_id, chunk.chunk)
        if key in self._held:
            await msg.in_progress()
            return None
        now = time.monotonic()
        if past_deadline(chunk, time.time()):
            self._held.hold(key, msg, chunk, trace)
            self._held.settle([(key, len(chunk.items))], now)
            return None
        pipe = self._pipes.get(chunk.model, chunk.model_version)
        self._held.hold(key, msg, chunk, trace)
        encoded = await asyncio.to_thread(pipe.tokenizer.encode, [it.text for it in chunk.items])
        place(pipe, chunk, key, encoded, trace, now=now, wall=time.time())
        return pipe
