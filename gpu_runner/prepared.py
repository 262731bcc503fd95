"""A fetched batch made ready for the backend, and the log context of one batch."""

from __future__ import annotations

from dataclasses import dataclass, field

from nats.aio.msg import Msg

from core.tracing import bound, trace_id_of
from schemas.bus import Batch, BatchItem
from store.results.base import ItemRecord


@dataclass(frozen=True, slots=True)
class Prepared:
    """A fetched batch, decoded, its items marked running: ready for the backend."""

    msg: Msg
    batch: Batch
    deliveries: int
    records: list[ItemRecord] = field(default_factory=list)
    """Results known without inference: pre-failed items, items past their deadline."""
    run: list[BatchItem] = field(default_factory=list)
    resume: bool = False
    """A redelivery: resumed alone, after the write-back in flight (see ``Runner._resume``)."""


def log_context(batch: Batch):
    """Log lines about this batch carry its id, and its job's id and trace when it serves
    one job (lines about one job of a mixed batch add them with ``job_log_fields``)."""
    jobs = {it.job_id for it in batch.items} | {f.job_id for f in batch.failed}
    if len(jobs) == 1:
        [job] = jobs
        return bound(batch_id=batch.batch_id, **job_log_fields(batch, job))
    return bound(batch_id=batch.batch_id)


def job_log_fields(batch: Batch, job_id: str) -> dict[str, str]:
    trace = trace_id_of(batch.traces.get(job_id))
    return {"job_id": job_id, "trace_id": trace} if trace else {"job_id": job_id}
