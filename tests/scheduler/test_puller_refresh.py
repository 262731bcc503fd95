"""Which lanes the puller lists: those JOBS says have messages, less the ones whose every
message is a chunk this replica already holds (nothing there can be pulled, and an empty
pull waits out its timeout while an interactive chunk may be arriving)."""

from __future__ import annotations

from types import SimpleNamespace

from scheduler.fairshare import FairShare, Lane
from scheduler.held import HeldChunks
from scheduler.puller import FairPuller
from schemas.bus import Chunk, ChunkItem
from schemas.states import Priority

BIG = Lane("minilm", Priority.BATCH, "big")
PROBE = Lane("minilm", Priority.INTERACTIVE, "small")


class Backlog:
    """The lanes' message counts as JOBS would report them (held chunks included)."""

    def __init__(self, counts: dict[Lane, int]):
        self.counts = counts

    async def backlog(self) -> dict[Lane, int]:
        return dict(self.counts)


def hold(held: HeldChunks, lane: Lane, chunk: int) -> None:
    c = Chunk(job_id="job-" + lane.tenant, chunk=chunk, model=lane.model, model_version=1,
              priority=lane.priority.value, tenant=lane.tenant, created_at=0.0,
              items=[ChunkItem(index=0, text="x")])
    held.hold((c.job_id, chunk), SimpleNamespace(), c, None)


async def test_a_lane_whose_messages_are_all_held_here_is_not_listed() -> None:
    held = HeldChunks()
    for k in range(3):
        hold(held, BIG, k)
    lanes = Backlog({BIG: 3, PROBE: 1})
    puller = FairPuller(FairShare(lambda _t: 1.0), lanes, SimpleNamespace(), None,
                        refresh_s=0.2, held=held.per_lane)
    await puller.refresh(1.0)
    assert puller.lanes() == [PROBE]
    lanes.counts[BIG] = 4  # the gateway published one more chunk of the job
    await puller.refresh(2.0)
    assert set(puller.lanes()) == {BIG, PROBE}
