"""The ack ledger: a chunk is ready to ack only when every item is in a published batch."""

from __future__ import annotations

from scheduler.held import HeldChunks, counts_by_chunk
from tests.scheduler.helpers import chunk


def test_a_chunk_is_settled_only_when_all_its_items_are() -> None:
    held = HeldChunks()
    held.hold(("j", 0), msg=object(), chunk=chunk(n=3), trace=None)
    held.settle([(("j", 0), 2)], now=1.0)
    assert held.settled() == []
    held.settle([(("j", 0), 1)], now=2.0)
    assert held.settled() == [("j", 0)]
    held.release(("j", 0))
    assert ("j", 0) not in held and len(held) == 0


def test_chunks_without_progress_are_the_ones_to_extend() -> None:
    held = HeldChunks()
    held.hold(("a", 0), msg=object(), chunk=chunk("a"), trace=None)
    held.hold(("b", 0), msg=object(), chunk=chunk("b"), trace=None)
    held[("a", 0)].last_progress = 0.0
    held.settle([(("b", 0), 1)], now=9.0)
    assert [h.chunk.job_id for h in held.quiet(now=10.0, longer_than=5.0)] == ["a"]


def test_a_batch_counts_its_items_per_chunk() -> None:
    assert counts_by_chunk([("a", 0), ("b", 1), ("a", 0)]) == {("a", 0): 2, ("b", 1): 1}
