"""Credit: how many batches the runners of a model version can take now (late formation)."""

from __future__ import annotations

import math

from nats.js import JetStreamContext
from nats.js import errors as jserr

from schemas import subjects
from store.runners import RunnerPool, RunnerRegistry

POOL_REFRESH_S = 1.0
"""How often the scheduler re-reads the runner registry (live runners, their measured speed):
heartbeats come every few seconds, so reading it on every step would only add round trips."""
BATCH_ITEMS_ALPHA = 0.2
"""Weight of the newest batch in the running mean of items per batch."""


def batches_ahead(queue_s: float, capacity: float | None, batch_items: float,
                  max_batches: int) -> int:
    """Batches to keep formed ahead per runner: ``queue_s`` seconds of its measured
    ``capacity`` (items/s), in batches of ``batch_items``, at most ``max_batches``; none while
    the capacity is unknown."""
    if not capacity or queue_s <= 0 or batch_items <= 0:
        return 0
    return min(max_batches, math.floor(queue_s * capacity / batch_items))


class RunnerCredit:
    """Reads the runners' room from their BATCHES consumer and the runner registry."""

    def __init__(self, js: JetStreamContext, runners: RunnerRegistry, *, batches_per_runner: int,
                 queue_s: float = 0.0, max_batches: int = 8, time_budget_s: float = 0.0):
        self._js = js
        self._runners = runners
        self._per_runner = batches_per_runner
        self._queue_s = queue_s
        self._max_batches = max_batches
        self._batch_items: dict[tuple[str, int], float] = {}
        self._time_budget_s = time_budget_s
        self._pools: dict[tuple[str, int], tuple[float, RunnerPool]] = {}

    def observe_batch(self, model: str, version: int, items: int) -> None:
        """A batch of ``items`` was published: the running mean sizes the time budget."""
        key = (model, version)
        mean = self._batch_items.get(key)
        self._batch_items[key] = items if mean is None else (
            mean + BATCH_ITEMS_ALPHA * (items - mean))

    async def _pool(self, model: str, version: int, now: float) -> RunnerPool:
        """The registry's view of the version's runners, read at most once a second."""
        key = (model, version)
        cached = self._pools.get(key)
        if cached is None or now - cached[0] >= POOL_REFRESH_S:
            cached = (now, await self._runners.pool(model, version))
            self._pools[key] = cached
        return cached[1]

    async def token_budget(self, model: str, version: int, now: float) -> int | None:
        """Padded tokens the slowest live runner of the model version runs in the time budget
        (None: no budget, or no rate measured yet)."""
        if self._time_budget_s <= 0:
            return None
        rate = (await self._pool(model, version, now)).token_rate
        return int(self._time_budget_s * rate) if rate else None

    async def throughput_items(self, model: str, version: int, now: float, seconds: float
                               ) -> int:
        """Items the version's live runners get through in ``seconds``, from their measured
        capacity (0 while nothing is measured)."""
        pool = await self._pool(model, version, now)
        return int(seconds * (pool.capacity or 0.0) * pool.count)

    async def _unclaimed_pulls(self, model: str, version: int, *, urgent: bool = False
                               ) -> int | None:
        """Runner pull requests waiting on the version's consumer minus the batches already
        waiting there; None when no runner has ever pulled from it."""
        try:
            info = await self._js.consumer_info(
                subjects.BATCHES_STREAM, subjects.runner_consumer(model, version, urgent=urgent))
        except jserr.NotFoundError:
            return None
        return (info.num_waiting or 0) - (info.num_pending or 0)

    async def urgent_wanted(self, model: str, version: int) -> int:
        """Urgent batches to form now: one per runner pull request waiting on the version's
        urgent consumer, minus the urgent batches already waiting there; 0 when no runner has
        ever pulled urgent work (an older runner: interactive items go with the batch work)."""
        return await self._unclaimed_pulls(model, version, urgent=True) or 0

    async def batches_wanted(self, model: str, version: int, now: float) -> int:
        """Batches to form now: one per runner pull request waiting on the model version's
        BATCHES consumer (each runner asks for its next batch while it runs one), plus work
        formed ahead per live runner (``batches_per_runner``, or ``runner_queue_s`` of its
        measured throughput if more), minus the batches already waiting. No runner, no
        batches: the work stays in JOBS, where fair share applies."""
        unclaimed = await self._unclaimed_pulls(model, version)
        if unclaimed is None:  # no runner has ever started
            return 0
        queued = 0
        mean = self._batch_items.get((model, version))
        if self._per_runner or (self._queue_s > 0 and mean):
            pool = await self._pool(model, version, now)
            ahead = self._per_runner
            if self._queue_s > 0 and mean:
                ahead = max(ahead, batches_ahead(self._queue_s, pool.capacity, mean,
                                                 self._max_batches))
            queued = ahead * pool.count
        return unclaimed + queued
