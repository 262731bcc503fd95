"""The gateway's background work, owned by the app's lifespan: due job ends (deadlines,
cancels a dead gateway left half done, late repairs), interrupted submissions, the retention
purge, the backlog counters' healing, and the load sample behind poll hints. Every replica
runs it; every step is idempotent and the job ends are leased, so replicas share the work
without a leader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from core.config import Settings
from gateway.jobend import JobEnder
from gateway.load import LoadView
from gateway.queue import QueueView
from schemas.errors import ErrorCode
from store.jobstate import JobStateCache
from store.results.base import ResultStore

log = logging.getLogger("inferq.gateway.sweeper")


class Loop(Protocol):
    """A background loop the sweeper starts and stops with its own (the webhook dispatcher)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Sweeper:
    """Periodic tasks with ``start()`` and an idempotent ``stop()`` (cancel, then await);
    ``loops`` are started and stopped with them."""

    def __init__(self, settings: Settings, store: ResultStore, cache: JobStateCache,
                 ender: JobEnder, load: LoadView, loops: Sequence[Loop] = (),
                 still_publishing: Callable[[str], Awaitable[bool]] | None = None,
                 queue: QueueView | None = None):
        self._s = settings
        self._queue = queue
        """Queue positions and ETAs, sampled right after the load (gateway/queue.py)."""
        self._store = store
        self._cache = cache
        self._ender = ender
        self._load = load
        self._loops = list(loops)
        self._still_publishing = still_publishing
        """Whether a job's chunks are still being queued in the background (file jobs)."""
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start one task per periodic step; idempotent."""
        if self._tasks:
            return
        self._stopping = asyncio.Event()
        s = self._s
        for name, every, step in (("job-ends", s.sweep_interval_s, self.sweep_ends),
                                  ("recovery", s.recovery_interval_s, self.recover_submissions),
                                  ("purge", s.purge_interval_s, self.purge),
                                  ("backlog", s.backlog_reconcile_s, self.reconcile_backlog),
                                  ("load", s.load_refresh_s, self.refresh_load)):
            self._tasks.append(asyncio.create_task(self._every(name, every, step),
                                                   name=f"gateway-{name}"))
        for loop in self._loops:
            loop.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the steps in hand finish (each is idempotent, so cutting one short is safe
        too), then cancel what is left; idempotent."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        self._stopping.set()
        for loop in self._loops:
            await loop.stop()
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace_s)

    async def _every(self, name: str, every_s: float,
                     step: Callable[[], Awaitable[object]]) -> None:
        while not self._stopping.is_set():
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dependency may be down: try again next time
                log.warning("gateway %s step failed: %s", name, exc,
                            exc_info=log.isEnabledFor(logging.DEBUG))
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # a library swallowed our cancel
                raise asyncio.CancelledError
            try:
                await asyncio.wait_for(self._stopping.wait(), every_s)
            except TimeoutError:
                pass

    async def refresh_load(self) -> None:
        """Sample the models' load, then the live jobs' queue positions."""
        await self._load.refresh()
        if self._queue is not None:
            await self._queue.refresh()

    async def sweep_ends(self) -> int:
        """Job ends whose time has come; loops while a full page was due."""
        total = 0
        while (n := await self._ender.sweep(time.time())) > 0:
            total += n
            if n < 100:
                break
        return total

    async def recover_submissions(self) -> int:
        """Jobs whose gateway died between recording and publishing them, and whom no client
        retry completed within the grace period: their inputs were never stored, so they
        cannot be republished; they fail with ``submission_interrupted`` (retryable)."""
        older_than = time.time() - self._s.submit_recovery_grace_s
        n = 0
        for job in await self._store.unpublished_jobs(older_than, limit=100):
            current = await self._store.get_job(job.job_id)
            if current is None or current.published:
                continue  # a retry completed it meanwhile
            if self._still_publishing and await self._still_publishing(job.job_id):
                continue  # a file job some gateway is publishing (gateway/filejobs.py)
            log.warning("job %s of %s was never fully published: failing it", job.job_id,
                        job.tenant)
            await self._ender.end_now(current, ErrorCode.SUBMISSION_INTERRUPTED)
            n += 1
        return n

    async def reconcile_backlog(self) -> int:
        """Heal the backlog counters behind quotas and overload from the live jobs."""
        # Spaced across replicas: one run per interval, whichever gateway gets there first.
        live, drift = await self._cache.reconcile_backlog(
            time.time(), every_s=self._s.backlog_reconcile_s * 0.9)
        for field, (was, now) in drift.items():
            log.warning("backlog %s drifted: %d, recomputed %d (%d live jobs)", field, was,
                        now, live)
        return len(drift)

    async def purge(self) -> int:
        """Delete expired jobs, results and idempotency records (a no-op on Cassandra)."""
        n = await self._store.purge_expired(time.time())
        if n:
            log.info("purged %d expired rows", n)
        return n
