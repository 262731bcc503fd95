"""The ack ledger: chunks pulled from JOBS whose items are not all in published batches yet.

A chunk is acked only when every one of its items is in a published batch, so a crash anywhere
means redelivery, never loss (duplicates are absorbed by the runners' write-back). Plain
synchronous bookkeeping: the async shell does the acks and the in-progress extensions.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from nats.aio.msg import Msg

from schemas.bus import Chunk

ChunkKey = tuple[str, int]
"""A chunk's identity: (job id, chunk number)."""


@dataclass
class HeldChunk:
    """A chunk whose items are not all in published batches yet."""

    msg: Msg
    chunk: Chunk
    outstanding: int
    last_progress: float = field(default_factory=time.monotonic)
    trace: str | None = None
    """The job's span for its batches: a child of the chunk's traceparent (NATS header, else
    the chunk body), or None when the chunk came without one."""
    held_since_ns: int = field(default_factory=time.time_ns)
    """Wall-clock start of the chunk's batch formation (its span starts here)."""


class HeldChunks:
    """Every chunk this replica holds, by key: items still outstanding, last progress."""

    def __init__(self) -> None:
        self._held: dict[ChunkKey, HeldChunk] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __getitem__(self, key: ChunkKey) -> HeldChunk:
        return self._held[key]

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: ChunkKey, msg: Msg, chunk: Chunk, trace: str | None) -> HeldChunk:
        """Start holding a chunk: all its items are outstanding until settled."""
        held = self._held[key] = HeldChunk(msg, chunk, outstanding=len(chunk.items), trace=trace)
        return held

    def settle(self, counts: Iterable[tuple[ChunkKey, int]], now: float) -> None:
        """``n`` items of each chunk are now in a published batch (counts as progress)."""
        for key, n in counts:
            held = self._held[key]
            held.outstanding -= n
            held.last_progress = now

    def settled(self) -> list[ChunkKey]:
        """Chunks with every item published: ready to ack, then ``release``."""
        return [k for k, h in self._held.items() if h.outstanding <= 0]

    def release(self, key: ChunkKey) -> HeldChunk:
        """Stop holding a chunk (about to be acked)."""
        return self._held.pop(key)

    def per_lane(self) -> Counter[tuple[str, str, str]]:
        """Chunks held per lane, as (model, priority, tenant): JOBS still counts them (a
        work queue keeps a message until it is acked), but none of them can be pulled."""
        return Counter((h.chunk.model, h.chunk.priority, h.chunk.tenant)
                       for h in self._held.values())

    def quiet(self, now: float, longer_than: float) -> list[HeldChunk]:
        """Chunks without progress for ``longer_than`` seconds: JetStream must hear that we
        are still working on them, or it redelivers them at AckWait."""
        return [h for h in self._held.values() if now - h.last_progress > longer_than]


def counts_by_chunk(sources: Iterable[ChunkKey]) -> dict[ChunkKey, int]:
    """How many items of a batch came from each chunk (one source key per item)."""
    counts: dict[ChunkKey, int] = {}
    for key in sources:
        counts[key] = counts.get(key, 0) + 1
    return counts
