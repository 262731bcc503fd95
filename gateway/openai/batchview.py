"""A native job seen as an OpenAI ``Batch``: its status, timestamps and request counts.

| native job | batch ``status`` |
| --- | --- |
| queued, running | ``in_progress`` (files are validated at upload: never ``validating``) |
| ended by a cancel | ``cancelled`` (``cancelling_at`` = ``cancelled_at``: a cancel is at once) |
| ended by its deadline (the completion window) | ``expired`` |
| ended otherwise by the service (submission interrupted, model unavailable) | ``failed`` |
| every item terminal | ``completed``, whatever failed (their requests are in the error file) |

Results are final when the last item is, so there is no ``finalizing`` step either.

Request counts: a request (an input line) completed when every one of its texts did, and
failed when one did not. Where every request holds one text they are the item counts. Otherwise,
while the batch runs, they are lower bounds from the item counts (``S - (N - R)`` of ``S``
items done among ``N`` texts in ``R`` requests), and once it ends they are exact: from the item
counts when no item or every item failed, else from rendering the output once.
"""

from __future__ import annotations

from gateway.openai.outputlines import ERRORS, OUTPUT, batch_id, file_id
from schemas.errors import ErrorCode
from schemas.openai_batch import (
    Batch,
    BatchError,
    BatchErrors,
    BatchRecord,
    BatchRequestCounts,
    BatchStatus,
)
from schemas.states import TERMINAL_JOB
from store.jobstate import JobStatusSnapshot
from store.results.base import JobRecord

_ENDED: dict[str, BatchStatus] = {ErrorCode.CANCELLED: "cancelled",
                                  ErrorCode.DEADLINE_EXCEEDED: "expired"}


def known_counts(record: BatchRecord, snap: JobStatusSnapshot) -> BatchRequestCounts | None:
    """The request counts that the item counts alone give: exact once terminal, lower bounds
    while running; None for a terminal batch that needs its output rendered."""
    total, items = record.requests, snap.total
    extra = items - total  # texts beyond the first of each request
    if snap.status not in TERMINAL_JOB:
        failed = max(snap.failed - extra, 1 if snap.failed else 0)
        return BatchRequestCounts(total, max(snap.succeeded - extra, 0), failed)
    if extra == 0:
        return BatchRequestCounts(total, snap.succeeded, snap.failed)
    if snap.failed == 0:
        return BatchRequestCounts(total, total, 0)
    if snap.succeeded == 0:
        return BatchRequestCounts(total, 0, total)
    return None


def to_batch(job: JobRecord, record: BatchRecord, snap: JobStatusSnapshot,
             counts: BatchRequestCounts) -> Batch:
    """The ``Batch`` object of a native job made by ``POST /openai/v1/batches``."""
    created = int(job.created_at)
    common = dict(
        id=batch_id(job.job_id), endpoint=record.endpoint, input_file_id=record.input_file_id,
        completion_window=record.completion_window, created_at=created,
        request_counts=counts, in_progress_at=created, metadata=record.metadata,
        expires_at=int(job.deadline) if job.deadline else None,
        model=f"{job.model}@{job.model_version}")
    if snap.status not in TERMINAL_JOB:
        return Batch(status="in_progress", **common)  # type: ignore[arg-type]
    ended = int(snap.finished_at or job.finished_at or job.created_at)
    files = dict(output_file_id=file_id(job.job_id, OUTPUT) if counts.completed else None,
                 error_file_id=file_id(job.job_id, ERRORS) if counts.failed else None)
    code = snap.error.code if snap.error else None
    status = _ENDED.get(code or "")
    if status == "cancelled":
        return Batch(status=status, cancelling_at=ended, cancelled_at=ended, **files,
                     **common)  # type: ignore[arg-type]
    if status == "expired":
        return Batch(status=status, expired_at=ended, **files, **common)  # type: ignore[arg-type]
    if code is not None and snap.error is not None:  # the service ended it
        errors = BatchErrors([BatchError(code=code, message=snap.error.message)])
        return Batch(status="failed", failed_at=ended, errors=errors, **files,
                     **common)  # type: ignore[arg-type]
    return Batch(status="completed", completed_at=ended, **files, **common)  # type: ignore[arg-type]
