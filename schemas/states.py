"""Job and item states: the enums, their named sets, and the one home of each transition rule.

The Lua scripts under ``store/lua`` apply the same rules inside Redis (they cannot import
Python); their comments name the function here that they mirror.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job is in its lifecycle: queued, then running, then succeeded or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ItemStatus(enum.StrEnum):
    """Where one item is: pending (nothing started it), running, then succeeded or failed."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    """How a terminal job's items ended; a job with some failed items still succeeds."""

    ALL_SUCCEEDED = "all_succeeded"
    PARTIAL = "partial"
    ALL_FAILED = "all_failed"


class Priority(enum.StrEnum):
    """A job's scheduling class; each has its own lanes (``inferq.jobs.<model>.<priority>``)."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


TERMINAL_JOB = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
"""Statuses a job never leaves: every writer refuses to change a job once it is in one."""
LIVE_JOB = frozenset(JobStatus) - TERMINAL_JOB
"""Statuses a job can still leave (queued, running): the complement of ``TERMINAL_JOB``."""
TERMINAL_ITEM = frozenset({ItemStatus.SUCCEEDED, ItemStatus.FAILED})
"""Statuses an item never leaves: only items in one of them have a durable result row."""

JOB_RANK: dict[JobStatus, int] = {
    JobStatus.QUEUED: 0, JobStatus.RUNNING: 1, **dict.fromkeys(TERMINAL_JOB, 2)}
"""Position in the lifecycle: a job's status never moves to a lower rank (terminal is last)."""


def derive_job_state(
    total: int, started: int, succeeded: int, failed: int
) -> tuple[JobStatus, Outcome | None]:
    """The job status implied by item counts (the rule ``record_results.lua`` applies too).

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


def job_failure_outcome(succeeded: int) -> Outcome:
    """The outcome of a job ended by a job-level failure (cancel, deadline, no model): it is
    ``failed`` whatever its items did, ``partial`` if any had succeeded, else ``all_failed``
    (the rule ``fail_remaining.lua`` applies too)."""
    return Outcome.PARTIAL if succeeded else Outcome.ALL_FAILED
