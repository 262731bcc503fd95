"""Job and item states: the enums, their named sets, and the one job transition rule."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ItemStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    ALL_SUCCEEDED = "all_succeeded"
    PARTIAL = "partial"
    ALL_FAILED = "all_failed"


class Priority(enum.StrEnum):
    INTERACTIVE = "interactive"
    BATCH = "batch"


TERMINAL_JOB = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
TERMINAL_ITEM = frozenset({ItemStatus.SUCCEEDED, ItemStatus.FAILED})

# Position in the lifecycle: a job's status never moves to a lower rank.
JOB_RANK = {JobStatus.QUEUED: 0, JobStatus.RUNNING: 1, JobStatus.SUCCEEDED: 2, JobStatus.FAILED: 2}


def derive_job_state(
    total: int, started: int, succeeded: int, failed: int
) -> tuple[JobStatus, Outcome | None]:
    """The job status implied by item counts (the rule the Redis script applies too).

    ``started`` counts items that ever began (running or terminal).
    """
    done = succeeded + failed
    if done > total or succeeded < 0 or failed < 0:
        raise ValueError(f"impossible counts: total={total} succeeded={succeeded} failed={failed}")
    if total > 0 and done == total:
        if failed == 0:
            return JobStatus.SUCCEEDED, Outcome.ALL_SUCCEEDED
        if succeeded == 0:
            return JobStatus.FAILED, Outcome.ALL_FAILED
        return JobStatus.SUCCEEDED, Outcome.PARTIAL
    if started > 0 or done > 0:
        return JobStatus.RUNNING, None
    return JobStatus.QUEUED, None
