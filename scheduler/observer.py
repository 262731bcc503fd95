"""Queue metrics and the autoscaling signal, refreshed by the scheduler every few seconds.

``inferq_desired_runners{model}`` is a leading indicator: the runners needed to finish the
model's backlog within ``target_wait_s`` at the per-runner capacity the runners measure
(items per second of busy time), rather than a lagging one such as utilisation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable

from nats.js import JetStreamContext
from nats.js import errors as jserr

from core import metrics
from scheduler.fairshare import Lane
from schemas import subjects
from schemas.bus import CHUNK_DECODER
from store.jobstate import JobStateCache
from store.runners import RunnerRegistry

log = logging.getLogger("inferq.scheduler.observer")


def desired_runners(backlog_items: int, capacity_per_runner: float | None, target_wait_s: float,
                    live_runners: int) -> int:
    """Runners needed to drain ``backlog_items`` within ``target_wait_s``.

    With no capacity measured yet, keep what runs (at least one while there is work).
    """
    if backlog_items <= 0:
        return 0
    if not capacity_per_runner:
        return max(1, live_runners)
    return max(1, math.ceil(backlog_items / (capacity_per_runner * target_wait_s)))


class QueueObserver:
    """Samples queue depth, oldest age per (model, priority) and the desired-runner gauge,
    at most once every ``every_s``; a failed sample is skipped, never fatal."""

    def __init__(self, js: JetStreamContext, cache: JobStateCache, registry: RunnerRegistry,
                 lanes_with_work: Callable[[], Awaitable[Iterable[Lane]]],
                 *, target_wait_s: float = 60.0, every_s: float = 2.0):
        self._js = js
        self._lanes_with_work = lanes_with_work
        """Every lane with chunks in JOBS, pulled or not: a chunk held in a former waits too,
        so the fair-share ring (only lanes with something left to pull) would miss it."""
        self._cache = cache
        self._registry = registry
        self._target = target_wait_s
        self._every = every_s
        self._last = 0.0

    async def maybe_observe(self, versions: dict[str, int]) -> None:
        """Sample now if ``every_s`` has passed since the last sample (called every step)."""
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        try:
            await self._observe(versions)
        except Exception:
            log.debug("queue observation failed", exc_info=True)

    async def _observe(self, versions: dict[str, int]) -> None:
        backlog = await self._cache.backlog()
        per_model: dict[str, int] = {}
        for (model, priority), n in backlog.models.items():
            metrics.QUEUE_DEPTH.labels(model, priority).set(n)
            per_model[model] = per_model.get(model, 0) + n
        oldest: dict[tuple[str, str], float] = {}
        wall = time.time()
        for lane in await self._lanes_with_work():
            age = await self._oldest_age(lane, wall)
            if age is not None:
                key = (lane.model, lane.priority)
                oldest[key] = max(oldest.get(key, 0.0), age)
        for (model, priority) in backlog.models:
            metrics.QUEUE_OLDEST_AGE.labels(model, priority).set(oldest.get((model, priority), 0))
        for model, n in per_model.items():
            version = versions.get(model)
            if version is None:
                continue
            pool = await self._registry.pool(model, version)
            metrics.DESIRED_RUNNERS.labels(model).set(
                desired_runners(n, pool.capacity, self._target, pool.count))

    async def _oldest_age(self, lane: Lane, wall: float) -> float | None:
        subject = subjects.job_subject(lane.model, lane.priority, lane.tenant)
        try:
            raw = await self._js._jsm.get_msg(subjects.JOBS_STREAM, seq=1, subject=subject,
                                              next=True)
        except jserr.NotFoundError:
            return None
        chunk = CHUNK_DECODER.decode(raw.data)
        return max(0.0, wall - chunk.created_at)
