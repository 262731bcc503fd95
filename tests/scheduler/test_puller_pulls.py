"""How much the puller takes in one step: up to ``PULLS_PER_STEP`` chunks while the formers
have room, but no more once a full batch waits for a runner with room (pulling on would only
delay it: the step forms and publishes it, the next pulls again)."""

from __future__ import annotations

from types import SimpleNamespace

from scheduler.fairshare import FairShare, Lane
from scheduler.puller import PULLS_PER_STEP, FairPuller
from schemas.states import Priority

BIG = Lane("minilm", Priority.BATCH, "big")


class Pipes:
    """The formers as the puller sees them: items held, their limit, a batch ready or not."""

    hold_limit = 100_000

    def __init__(self, ready_after: int | None):
        self.held_items = 0
        self.pulled = 0
        self._ready_after = ready_after

    def batch_ready(self) -> bool:
        return self._ready_after is not None and self.pulled >= self._ready_after


class Lanes:
    """A lane with plenty of chunks: every fetch gets one."""

    async def backlog(self) -> dict[Lane, int]:
        return {BIG: 1_000}

    async def subscription(self, lane: Lane):
        async def fetch(n: int, **_wait: float) -> list:
            return [SimpleNamespace(metadata=None)]
        return SimpleNamespace(fetch=fetch)


async def step(ready_after: int | None) -> int:
    pipes = Pipes(ready_after)

    async def accept(msg) -> int:
        pipes.pulled += 1
        pipes.held_items += 256
        return 256

    puller = FairPuller(FairShare(lambda _t: 1.0), Lanes(), pipes, accept, refresh_s=0.2)
    await puller.refresh(1.0)
    assert await puller.pull()
    return pipes.pulled


async def test_without_a_ready_batch_a_step_pulls_its_fill() -> None:
    assert await step(ready_after=None) == PULLS_PER_STEP


async def test_a_full_batch_for_a_runner_with_room_ends_the_pulls() -> None:
    assert PULLS_PER_STEP > 2
    assert await step(ready_after=2) == 2
