"""Redis is a cache: rebuild a job's hash (counters and item markers) from the result store."""

from __future__ import annotations

import logging
import time

from schemas.errors import JobError
from schemas.states import TERMINAL_JOB, JobStatus, Priority
from store.jobstate import JobFields, JobStateCache, RestoreOutcome, TerminalRecord
from store.results.base import JobRecord, ResultStore

log = logging.getLogger("inferq.store.rebuild")


def job_fields(job: JobRecord) -> JobFields:
    """The cache's view of a durable job record: its immutable fields."""
    return JobFields(tenant=job.tenant, model=job.model, version=job.model_version,
                     priority=Priority(job.priority), total=job.total, created_at=job.created_at,
                     expires_at=job.expires_at, deadline=job.deadline,
                     parent_job_id=job.parent_job_id)


def terminal_record(job: JobRecord) -> TerminalRecord | None:
    """The terminal state the durable record holds, if it has finished."""
    if job.status not in TERMINAL_JOB or job.finished_at is None:
        return None
    error = JobError(job.error_code, job.error_message or "") if job.error_code else None
    return TerminalRecord(JobStatus(job.status), job.finished_at, error)


async def rebuild_job_cache(store: ResultStore, cache: JobStateCache, job_id: str,
                            job: JobRecord | None = None) -> RestoreOutcome | None:
    """Restore the job's hash if it is missing; None when the store has no such job.

    If the rebuilt job turns out terminal while the store's record is not (the call that
    finished it was lost with the cache), the terminal state is persisted here, once.
    """
    job = job or await store.get_job(job_id)
    if job is None:
        return None
    done = await store.done_indexes(job_id)
    now = time.time()
    out = await cache.restore(job_id, job_fields(job), done, now, started_at=job.started_at,
                              terminal=terminal_record(job))
    if out.became_terminal:
        await store.finish_job(job_id, status=out.status, outcome=out.outcome, finished_at=now)
    log.info("rebuilt cache for job %s from the store (%d items done, restored=%s)",
             job_id, len(done), out.restored)
    return out
