"""The runner's write-back, in DESIGN.md's order: (1) upsert item rows, (2) count each item
once in Redis (one Lua call per job in the batch), (3) persist a terminal transition; the
caller acks only after all three. A crash anywhere before the ack means redelivery and the
same end state: rows are first-writer-wins and the Redis markers count each item once.
The same script call adds what it counts to the tenant's usage (:mod:`store.usage`), with
each item's input tokens and inference time: a replay adds nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from core import faults, metrics
from schemas.bus import BatchItem
from schemas.states import TERMINAL_JOB, ItemStatus, JobStatus, Outcome
from store.jobstate import JobStateCache
from store.markers import done_items
from store.rebuild import rebuild_job_cache
from store.redis_errors import CacheMiss
from store.results.base import ItemRecord, ResultStore
from store.usage import ItemUsage

log = logging.getLogger("inferq.runner.writeback")

_STARTED_MEMORY = 10_000


@dataclass(frozen=True)
class JobTransition:
    """A job this write-back finished (or whose finish it persisted again after a crash)."""

    job_id: str
    status: JobStatus
    outcome: Outcome | None


class WriteBack:
    """Writes a runner's item results to the store and the job-state cache, in the order
    that makes a crash at any point safe to replay."""

    def __init__(self, store: ResultStore, cache: JobStateCache, model: str, redis: Redis):
        self._store = store
        self._cache = cache
        self._model = model
        self._redis = redis
        self._started: OrderedDict[str, None] = OrderedDict()
        """Jobs whose start this process has persisted: one store write per job, not per
        batch (a write per batch queues behind the write-back's transactions). A restarted
        runner writes again; the store's update is idempotent."""

    async def not_counted(self, items: list[BatchItem]) -> list[BatchItem]:
        """The items no runner has counted yet, e.g. left by a runner that crashed before its
        ack (one marker read per job)."""
        by_job: dict[str, list[int]] = defaultdict(list)
        for it in items:
            by_job[it.job_id].append(it.index)
        done: set[tuple[str, int]] = set()
        for job_id, indexes in by_job.items():
            counted = await done_items(self._redis, self._cache.key(job_id), indexes)
            done |= {(job_id, i) for i in counted}
        return [it for it in items if (it.job_id, it.index) not in done]

    async def mark_running(self, job_ids_to_indexes: dict[str, list[int]], now: float) -> dict[
            str, JobStatus | None]:
        """Mark items running; returns each job's status (terminal jobs are left untouched;
        None: the job is gone)."""
        statuses = {}
        for job_id, indexes in job_ids_to_indexes.items():
            statuses[job_id] = await self._with_cache(
                job_id, lambda j=job_id, ix=indexes: self._cache.mark_running(j, ix, now))
            if statuses[job_id] is not None and job_id not in self._started:
                await self._store.mark_started(job_id, now)
                self._started[job_id] = None
                if len(self._started) > _STARTED_MEMORY:
                    self._started.popitem(last=False)
        return statuses

    async def commit(self, records: list[ItemRecord], now: float,
                     usage: Mapping[tuple[str, int], ItemUsage] | None = None
                     ) -> list[JobTransition]:
        """Write ``records`` (rows, then counts, then any job they finish); idempotent, so a
        redelivered batch may commit the same records again. ``usage`` holds what each item
        that ran cost, by (job id, index); it is counted with the item, once."""
        usage = usage or {}
        if not records:
            return []
        await self._store.upsert_items(records)
        faults.crash_point("runner.after_upsert")
        by_job: dict[str, list[tuple[int, ItemStatus]]] = defaultdict(list)
        codes: dict[str, list[ItemRecord]] = defaultdict(list)
        costs: dict[str, dict[int, ItemUsage]] = defaultdict(dict)
        for r in records:
            by_job[r.job_id].append((r.index, r.status))
            codes[r.job_id].append(r)
            if (cost := usage.get((r.job_id, r.index))) is not None:
                costs[r.job_id][r.index] = cost
        finished: list[JobTransition] = []
        for job_id, results in by_job.items():
            out = await self._with_cache(
                job_id, lambda j=job_id, res=results: self._cache.record_results(
                    j, res, now, costs.get(j)))
            if out is None:  # the job is gone (expired and purged): nothing to count
                continue
            if out.newly_counted:
                self._count_items(codes[job_id], out.newly_counted)
            if out.status in TERMINAL_JOB:
                # Idempotent: a redelivery after a crash here persists the same transition.
                changed = await self._store.finish_job(
                    job_id, status=out.status, outcome=out.outcome, finished_at=now)
                if out.became_terminal or changed:
                    finished.append(JobTransition(job_id, out.status, out.outcome))
                if out.became_terminal:
                    metrics.JOBS_FINISHED.labels(self._model, out.status, out.outcome or "").inc()
        faults.crash_point("runner.after_redis")
        return finished

    def _count_items(self, records: list[ItemRecord], newly: int) -> None:
        # The script counts per job; attribute per status/code for the metric (approximate only
        # when a replay counts part of a batch, which the metric tolerates).
        for (status, code), n in Counter((r.status, r.error_code or "")
                                         for r in records[:newly]).items():
            metrics.ITEMS_FINISHED.labels(self._model, status, code).inc(n)

    async def _with_cache(self, job_id: str, call):
        """Run a cache call; on a cache miss rebuild the job's hash from the store and retry
        once. A job the store does not have, or that has expired, is gone: None."""
        try:
            return await call()
        except CacheMiss:
            if await rebuild_job_cache(self._store, self._cache, job_id) is None:
                log.warning("job %s not in the store: skipping its results", job_id)
                return None
        try:
            return await call()
        except CacheMiss:
            log.warning("job %s could not be restored (expired): skipping its results", job_id)
            return None
