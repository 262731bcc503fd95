"""A job's status as the API serves it: the snapshot read from Redis, its document and ETag."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

from schemas.api import Counts, JobStatusDoc
from schemas.errors import JobError
from schemas.states import JobStatus, Outcome, Priority


class JobStatusSnapshot(msgspec.Struct, frozen=True):
    """A job's hash without its markers: what the status document and its ETag are built from."""

    job_id: str
    tenant: str
    model: str
    version: int
    priority: Priority
    total: int
    created_at: float
    expires_at: float
    deadline: float | None
    status: JobStatus
    outcome: Outcome | None
    started_at: float | None
    finished_at: float | None
    error: JobError | None
    succeeded: int
    failed: int
    running: int
    rev: int
    queue_position: int | None = None
    """Set by the gateway's queue view (gateway/queue.py), not stored in Redis."""
    estimated_completion_at: float | None = None
    """Set with ``queue_position``: when the job should end, epoch seconds."""
    parent_job_id: str | None = None
    """A retry's parent job (the ``parent`` field of the hash)."""

    @property
    def pending(self) -> int:
        """Items that no batch has started yet (the counters only hold the other three)."""
        return self.total - self.running - self.succeeded - self.failed

    @property
    def etag(self) -> str:
        """The document's strong ETag (see :func:`etag_for`)."""
        if self.queue_position is None and self.estimated_completion_at is None:
            return etag_for(self.job_id, self.rev)
        # The estimate is part of the document: a new one is a new ETag (to the second).
        eta = None if self.estimated_completion_at is None else int(
            self.estimated_completion_at)
        return etag_for(self.job_id, f"{self.rev}:{self.queue_position}:{eta}")

    def to_doc(self) -> JobStatusDoc:
        """The ``GET /v1/jobs/{id}`` body."""
        return JobStatusDoc(
            job_id=self.job_id, status=self.status, outcome=self.outcome,
            counts=Counts(total=self.total, pending=self.pending, running=self.running,
                          succeeded=self.succeeded, failed=self.failed),
            model=self.model, model_version=self.version, priority=self.priority,
            created_at=_iso(self.created_at), started_at=_iso_or_none(self.started_at),
            finished_at=_iso_or_none(self.finished_at), expires_at=_iso(self.expires_at),
            error=self.error, queue_position=self.queue_position,
            estimated_completion_at=_iso_or_none(self.estimated_completion_at),
            parent_job_id=self.parent_job_id,
        )


def etag_for(job_id: str, rev: int | str) -> str:
    """A strong ETag: ``rev`` changes with every write, so equal tags mean an equal document."""
    return '"' + hashlib.blake2b(f"{job_id}:{rev}".encode(), digest_size=12).hexdigest() + '"'


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _iso_or_none(t: float | None) -> str | None:
    return None if t is None else _iso(t)
