"""Chunk intake: tokenized items go to the former, the rest to one batch of failed items."""

from __future__ import annotations

from models.tokenize import Encoded, ItemRejection
from scheduler.held import HeldChunks
from scheduler.intake import ChunkIntake, past_deadline, place
from schemas.errors import ErrorCode
from schemas.states import Priority
from tests.scheduler.helpers import chunk, pipe


def test_tokenized_items_are_queued_with_the_chunks_priority_and_key() -> None:
    p = pipe()
    c = chunk(n=2, priority=Priority.INTERACTIVE)
    place(p, c, ("j", 0), [Encoded([1, 2, 3]), Encoded([4] * 20, truncated=True)], "tp",
          now=1.0, wall=100.0)
    assert len(p.former) == 2 and p.former.count(Priority.INTERACTIVE) == 2
    assert p.unsent == []


def test_rejected_items_become_one_batch_of_failed_items_with_the_jobs_trace() -> None:
    p = pipe()
    rejected = ItemRejection(ErrorCode.EMPTY_TEXT.value, "empty")
    place(p, chunk(n=3), ("j", 0), [Encoded([1]), rejected, rejected], "tp", now=1.0,
          wall=100.0)
    [(batch, key)] = p.unsent
    assert key == ("j", 0) and batch.items == [] and batch.traces == {"j": "tp"}
    assert [f.index for f in batch.failed] == [1, 2] and len(p.former) == 1


async def test_a_chunk_past_its_deadline_is_settled_with_nothing_queued_or_published() -> None:
    # Its items are the job-level end's to fail (the gateway's sweeper, at the deadline).
    held = HeldChunks()
    intake = ChunkIntake(pipes=None, held=held)  # no pipe is consulted for it
    assert await intake.admit(object(), chunk(n=2, deadline=50.0), None) is None
    assert held.settled() == [("j", 0)]


def test_a_chunk_is_past_its_deadline_from_the_deadline_on() -> None:
    assert not past_deadline(chunk(deadline=None), 1e12)
    assert not past_deadline(chunk(deadline=50.0), 49.9)
    assert past_deadline(chunk(deadline=50.0), 50.0)
