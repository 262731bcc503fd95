"""Rebuilding a lost job hash from the result store's rows: what the new hash must say.

Pure derivation, no Redis: :meth:`JobStateCache.restore` writes the plan with one script
call, and only if the hash is still missing.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas.states import (
    TERMINAL_JOB,
    ItemStatus,
    JobStatus,
    Outcome,
    derive_job_state,
    job_failure_outcome,
)
from store.jobstate.layout import create_args, hash_fields, marker_fields
from store.jobstate.records import JobFields, TerminalRecord
from store.markers import Marker, result_marker


class RestorePlan(msgspec.Struct, frozen=True):
    """The hash a restore writes (as ``create_job.lua`` arguments) and the state it derived.

    ``finalizes`` is true when the job is terminal here although the durable record was not.
    """

    status: JobStatus
    outcome: Outcome | None
    args: list[str]
    finalizes: bool


def plan_restore(
    job_id: str,
    fields: JobFields,
    done: Iterable[tuple[int, ItemStatus | str]],
    now: float,
    *,
    started_at: float | None = None,
    terminal: TerminalRecord | None = None,
) -> RestorePlan:
    """The hash implied by the job's item results (``done``) and its durable terminal state.

    Raises ValueError for records that cannot all be true: an item out of range or with two
    results, a ``terminal`` that is not terminal, or a success the results contradict.
    """
    if terminal is not None and terminal.status not in TERMINAL_JOB:
        raise ValueError(f"job {job_id}: TerminalRecord with status {terminal.status}")
    marks: dict[int, Marker] = {}
    for index, result in done:
        index, mark = int(index), result_marker(result)
        if not 0 <= index < fields.total or marks.setdefault(index, mark) != mark:
            raise ValueError(f"job {job_id}: bad or conflicting result for item {index}")
    started = started_at if started_at is not None else (now if marks else None)
    if terminal is not None and terminal.status == JobStatus.FAILED:
        # As fail_remaining left it: items whose rows were not written yet count failed.
        for index in range(fields.total):
            marks.setdefault(index, Marker.FAILED)
    succeeded = sum(1 for m in marks.values() if m == Marker.SUCCEEDED)
    failed = len(marks) - succeeded
    status, outcome = derive_job_state(fields.total, len(marks), succeeded, failed)
    finished_at = now if status in TERMINAL_JOB else None
    if terminal is not None:
        if terminal.status == JobStatus.FAILED:
            status, outcome = JobStatus.FAILED, job_failure_outcome(succeeded)
        elif status != terminal.status:
            raise ValueError(f"job {job_id}: store says {terminal.status} but results "
                             f"give {status} ({succeeded} succeeded, {failed} failed)")
        finished_at = terminal.finished_at
    # rev restarts from the clock (microseconds): far above any rev the lost hash reached,
    # so an ETag issued before the loss never matches a document after it.
    values = hash_fields(
        fields, status=status, outcome=outcome, started_at=started, finished_at=finished_at,
        error=terminal.error if terminal else None, succeeded=succeeded, failed=failed,
        rev=int(now * 1_000_000),
    ) + marker_fields(marks)
    pending = 0 if status in TERMINAL_JOB else fields.total - len(marks)
    return RestorePlan(status, outcome, create_args(fields, pending, values),
                       finalizes=terminal is None and status in TERMINAL_JOB)
