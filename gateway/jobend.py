"""Job-level failures: cancel, deadline exceeded, interrupted submission.

The write order keeps Redis counts equal to the store's rows although runners write
concurrently (they upsert rows first-writer-wins, then count in Redis, which ignores a
terminal job):

1. the store's job record goes terminal first, so a cache rebuilt from the store at any later
   moment already sees the job ended (``restore`` then counts every item without a row failed);
2. ``fail_remaining`` in Redis fails every item not yet counted, atomically, and says which;
3. exactly those items get ``failed`` rows, *replacing* a row that a racing batch wrote
   between its upsert and its (refused) count — Redis counted that item failed, so must we.

A retried end (the sweeper, a second cancel) repairs instead: it finishes the store record
if a crash left it live and writes the missing rows (items marked failed in Redis whose row
is absent or says succeeded). Ends are idempotent and may run concurrently.

``EndSchedule`` is the durable to-do list that makes ends happen even if the gateway that
started one dies: a Redis sorted set of ``<code>|<job_id>`` by due time. Deadlines go in at
submit; a cancel goes in before its work starts; any gateway's sweeper takes due entries
under a lease.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from schemas.errors import ITEM_RETRYABLE, ErrorCode
from schemas.states import TERMINAL_JOB, ItemStatus, JobStatus, job_failure_outcome
from store.endschedule import EndSchedule
from store.jobstate import JobStateCache, JobStatusSnapshot
from store.rebuild import rebuild_job_cache
from store.redis_errors import CacheMiss
from store.results.base import ItemRecord, JobRecord, ResultStore

log = logging.getLogger("inferq.gateway.jobend")

JOB_LEVEL = frozenset({ErrorCode.CANCELLED, ErrorCode.DEADLINE_EXCEEDED,
                       ErrorCode.SUBMISSION_INTERRUPTED, ErrorCode.MODEL_UNAVAILABLE})
MESSAGES = {
    ErrorCode.CANCELLED: "cancelled by the client before the item ran",
    ErrorCode.DEADLINE_EXCEEDED: "the job's deadline (timeout_s) passed before the item ran",
    ErrorCode.SUBMISSION_INTERRUPTED: "the gateway stopped before the job was fully queued and "
                                      "no retry completed it; submit it again",
}


@dataclass(frozen=True)
class Ended:
    """What an end left: the job's status, and whether this call is the one that ended it."""

    snapshot: JobStatusSnapshot
    ended_now: bool
    """True when this call moved the job to terminal (False: it already was; repaired)."""


class JobEnder:
    """Ends jobs with a job-level error, through ``EndSchedule`` so that an end survives the
    death of the gateway that started it."""

    def __init__(self, store: ResultStore, cache: JobStateCache, schedule: EndSchedule, *,
                 lease_s: float = 30.0, settle_s: float = 60.0):
        self._store = store
        self._cache = cache
        self.schedule = schedule
        self._lease = lease_s
        self._settle = settle_s

    async def end_now(self, job: JobRecord, code: ErrorCode) -> JobStatusSnapshot:
        """End the job now (cancel, interrupted submission); the schedule entry written
        first makes any gateway's sweeper finish it if this one dies part-way."""
        await self.schedule.at(job.job_id, code, time.time() + self._lease)
        ended = await self.end(job, code)
        await self._after(job, code, ended)
        return ended.snapshot

    async def sweep(self, now: float, limit: int = 100) -> int:
        """Run the ends that are due (deadlines, ends a dead gateway left, late repairs)."""
        due = await self.schedule.claim_due(now, self._lease, limit)
        for member in due:
            job_id, code = EndSchedule.parse(member)
            job = await self._store.get_job(job_id)
            if job is None or job.expires_at <= now:  # never created, or gone
                await self.schedule.done(job_id, code)
                continue
            try:
                ended = await self.end(job, code)
            except CacheMiss:  # expired meanwhile
                await self.schedule.done(job_id, code)
                continue
            await self._after(job, code, ended)
        return len(due)

    async def _after(self, job: JobRecord, code: ErrorCode, ended: Ended) -> None:
        if ended.ended_now:  # one late repair, for rows a batch in flight may still write
            await self.schedule.at(job.job_id, code, time.time() + self._settle)
        else:
            await self.schedule.done(job.job_id, code)

    async def end(self, job: JobRecord, code: ErrorCode) -> Ended:
        """End the job with a job-level ``code`` unless it is terminal; repair either way."""
        message = MESSAGES.get(code, str(code))
        snap = await self._snapshot(job)
        if snap.status in TERMINAL_JOB:
            await self.repair(job, snap)
            return Ended(snap, False)
        now = time.time()
        outcome = job_failure_outcome(snap.succeeded)  # best known yet
        if not await self._store.finish_job(job.job_id, status=JobStatus.FAILED,
                                            outcome=outcome, finished_at=now,
                                            error_code=code.value, error_message=message):
            # A crashed end already wrote the record: finish the end it started.
            stored = await self._store.get_job(job.job_id)
            if stored is None or stored.error_code not in JOB_LEVEL:
                return Ended(await self._snapshot(job), False)
            code, message = ErrorCode(stored.error_code), stored.error_message or message
        try:
            out = await self._cache.fail_remaining(job.job_id, code.value, message, now)
        except CacheMiss:
            await rebuild_job_cache(self._store, self._cache, job.job_id)
            out = await self._cache.fail_remaining(job.job_id, code.value, message, now)
        if out.became_terminal:
            await self._write_failed(job, out.newly_failed, code, message, now)
        snap = await self._snapshot(job)
        if not out.became_terminal:  # the job finished by itself, or a rebuild/end raced us
            await self.repair(job, snap)
        log.info("job %s ended: %s (%d items failed by it)", job.job_id, code,
                 len(out.newly_failed))
        return Ended(snap, out.became_terminal)

    async def repair(self, job: JobRecord, snap: JobStatusSnapshot) -> int:
        """Make the store agree with a terminal Redis job: its record, and after a job-level
        failure every missing or contradicting item row. Returns the rows written."""
        stored = await self._store.get_job(job.job_id)
        if stored is None:
            return 0
        error = snap.error if snap.error is not None and snap.error.code in JOB_LEVEL else None
        outcome = snap.outcome
        finished = snap.finished_at or time.time()
        if stored.status not in TERMINAL_JOB:
            await self._store.finish_job(
                job.job_id, status=snap.status, outcome=outcome, finished_at=finished,
                error_code=error.code if error else None,
                error_message=error.message if error else None)
        elif stored.error_code in JOB_LEVEL and (error is None
                                                 or error.code != stored.error_code):
            # Our end wrote the store first but the job had finished by itself (or ended
            # otherwise) in Redis, which clients have seen: the record follows Redis.
            await self._store.correct_job_end(
                job.job_id, expected_error_code=stored.error_code, status=snap.status,
                outcome=outcome, finished_at=finished, error_code=error.code if error else None,
                error_message=error.message if error else None)
        if error is None:
            return 0
        marks = await self._cache.item_states(job.job_id)
        if marks is None:
            return 0
        rows = dict(await self._store.done_indexes(job.job_id))
        wrong = [i for i in range(job.total) if marks.get(i) == ItemStatus.FAILED
                 and rows.get(i) in (None, ItemStatus.SUCCEEDED)]
        await self._write_failed(job, wrong, ErrorCode(error.code), error.message, time.time())
        if wrong:
            log.warning("job %s: repaired %d item rows after %s", job.job_id, len(wrong),
                        error.code)
        return len(wrong)

    async def _write_failed(self, job: JobRecord, indexes: list[int], code: ErrorCode,
                            message: str, now: float) -> None:
        if not indexes:
            return
        # Keep the client id where a racing batch left a row (the gateway has no inputs).
        rows = dict(await self._rows(job.job_id, indexes))
        records = [ItemRecord(job_id=job.job_id, index=i, status=ItemStatus.FAILED,
                              model_version=job.model_version,
                              client_id=rows[i].client_id if i in rows else None,
                              error_code=code.value, error_message=message,
                              error_retryable=ITEM_RETRYABLE.get(code, False), finished_at=now)
                   for i in indexes]
        for start in range(0, len(records), 1000):
            await self._store.replace_items(records[start:start + 1000])

    async def _rows(self, job_id: str, indexes: list[int]) -> list[tuple[int, ItemRecord]]:
        present = {i for i, _ in await self._store.done_indexes(job_id)} & set(indexes)
        out = []
        for i in sorted(present):
            [row] = await self._store.get_items(job_id, status=None, after_index=i - 1, limit=1)
            out.append((i, row))
        return out

    async def _snapshot(self, job: JobRecord) -> JobStatusSnapshot:
        snap = await self._cache.get_status(job.job_id)
        if snap is None:
            await rebuild_job_cache(self._store, self._cache, job.job_id, job)
            snap = await self._cache.get_status(job.job_id)
        if snap is None:
            raise CacheMiss(job.job_id)  # expired between the calls: nothing to end
        return snap
