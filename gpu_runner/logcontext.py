"""The log context of one batch: every line a runner logs about a batch names it, and its
job and trace when the batch serves one job; and its stages as spans of each job's trace."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from core.tracing import bound, child_spans, exporting, trace_id_of
from schemas.bus import Batch


def log_context(batch: Batch) -> AbstractContextManager[None]:
    """Log lines about this batch carry its id, and its job's id and trace when it serves
    one job (lines about one job of a mixed batch add them with ``job_log_fields``)."""
    jobs = {it.job_id for it in batch.items} | {f.job_id for f in batch.failed}
    if len(jobs) == 1:
        [job] = jobs
        return bound(batch_id=batch.batch_id, **job_log_fields(batch, job))
    return bound(batch_id=batch.batch_id)


def job_log_fields(batch: Batch, job_id: str) -> dict[str, str]:
    """The ``extra`` of a log line about one job of a batch: its id, and its trace if any."""
    trace = trace_id_of(batch.traces.get(job_id))
    return {"job_id": job_id, "trace_id": trace} if trace else {"job_id": job_id}


def stage_spans(stage: str, batch: Batch) -> AbstractContextManager[None]:
    """A stage of the batch as a span in the trace of each job it serves (a child of the
    scheduler's span for that job); a no-op unless spans are exported."""
    if not exporting():
        return nullcontext()
    return child_spans("runner", stage, batch.traces.values(), **{
        "inferq.batch_id": batch.batch_id, "inferq.model": batch.model,
        "inferq.model_version": batch.model_version, "inferq.bucket": batch.bucket,
        "inferq.batch_items": len(batch.items) + len(batch.failed)})
