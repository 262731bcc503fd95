"""Plain objects for the scheduler's synchronous parts: a model pipe, chunks, no event loop."""

from __future__ import annotations

from models.config import ModelConfig
from scheduler.former import BatchFormer, queue_delays
from scheduler.pipes import ModelPipe
from schemas.bus import Chunk, ChunkItem
from schemas.states import Priority

BUCKETS = [16, 32, 64]


def pipe(max_batch_size: int = 2) -> ModelPipe:
    """A pipe whose former fills a batch with ``max_batch_size`` items (no tokenizer)."""
    config = ModelConfig(name="m", version=1, output_dim=4, max_seq_len=64, buckets=BUCKETS,
                         max_batch_size=max_batch_size)
    former = BatchFormer(BUCKETS, max_batch_tokens=config.max_batch_tokens,
                         max_batch_size=max_batch_size, max_queue_delay=queue_delays(0.05, 4.0))
    return ModelPipe("m", 1, config, tokenizer=None, former=former)


def chunk(job: str = "j", n: int = 3, *, deadline: float | None = None,
          priority: Priority = Priority.BATCH) -> Chunk:
    """A chunk of ``n`` items of job ``job``."""
    return Chunk(job, 0, "t", "m", 1, priority, created_at=5.0,
                 items=[ChunkItem(i, f"text {i}") for i in range(n)], deadline=deadline)
