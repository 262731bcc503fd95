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

    @property
    def pending(self) -> int:
        """Items that no batch has started yet (the counters only hold the other three)."""
        return self.total - self.running - self.succeeded - self.failed

    @property
    def etag(self) -> str:
        """The document's strong ETag (see :func:`etag_for`)."""
        return etag_for(self.job_id, self.rev)

    def to_doc(self) -> JobStatusDoc:
        """The ``GET /v1/jobs/{id}`` body."""
        return JobStatusDoc(
            job_id=self.job_id, status=self.status, outcome=self.outcome,
            counts=Counts(total=self.total, pending=self.pending, running=self.running,
                          succeeded=self.succeeded, failed=self.failed),
            model=self.model, model_version=self.version, priority=self.priority,
            created_at=_iso(self.created_at), started_at=_iso_or_none(self.started_at),
            finished_at=_iso_or_none(self.finished_at), expires_at=_iso(self.expires_at),
            error=self.error,
        )


def etag_for(job_id: str, rev: int) -> str:
    """A strong ETag: ``rev`` changes with every write, so equal tags mean an equal document."""
    return '"' + hashlib.blake2b(f"{job_id}:{rev}".encode(), digest_size=12).hexdigest() + '"'


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _iso_or_none(t: float | None) -> str | None:
    return None if t is None else _iso(t)
