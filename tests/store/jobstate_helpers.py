"""What the job state cache tests share: a job's fields, and its snapshot read back."""

from __future__ import annotations

import time

from schemas.states import Priority
from store.jobstate import JobFields, JobStateCache, JobStatusSnapshot

T0 = 1_700_000_000.25  # created_at of every job here
EXPIRES = time.time() + 3600


def job(total: int, **kw: object) -> JobFields:
    """A job of ``total`` items created at T0 and live for an hour; ``kw`` overrides fields."""
    base = dict(tenant="acme", model="minilm", version=2, priority=Priority.BATCH, total=total,
                created_at=T0, expires_at=EXPIRES, deadline=None)
    return JobFields(**{**base, **kw})


async def snap(cache: JobStateCache, job_id: str) -> JobStatusSnapshot:
    """The job's snapshot, which must be cached."""
    s = await cache.get_status(job_id)
    assert s is not None
    return s


def counts(s: JobStatusSnapshot) -> tuple[int, int, int, int]:
    """(pending, running, succeeded, failed)."""
    return s.pending, s.running, s.succeeded, s.failed
