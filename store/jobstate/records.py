"""What goes into the job state cache and what its scripts answer: small frozen Structs."""

from __future__ import annotations

import msgspec

from schemas.errors import JobError
from schemas.states import JobStatus, Outcome, Priority


class JobFields(msgspec.Struct, frozen=True):
    """A job's immutable fields, as the gateway accepted it (times are epoch seconds)."""

    tenant: str
    model: str
    version: int
    priority: Priority
    total: int
    created_at: float
    expires_at: float
    deadline: float | None = None
    parent_job_id: str | None = None
    """A retry's parent job (its status document names it)."""


class TerminalRecord(msgspec.Struct, frozen=True):
    """The terminal state a durable job record already holds, for ``restore``."""

    status: JobStatus
    finished_at: float
    error: JobError | None = None


class RecordOutcome(msgspec.Struct, frozen=True):
    """What ``record_results`` did. ``became_terminal`` is true for exactly one call per job."""

    status: JobStatus
    outcome: Outcome | None
    newly_counted: int
    became_terminal: bool


class FailOutcome(msgspec.Struct, frozen=True):
    """What ``fail_remaining`` did: the items it failed (the caller writes their rows)."""

    status: JobStatus
    outcome: Outcome | None
    newly_failed: list[int]
    became_terminal: bool


class RestoreOutcome(msgspec.Struct, frozen=True):
    """What ``restore`` derived; written only if ``restored`` (the key was still missing).

    ``became_terminal`` is true when the rebuilt job is terminal although the durable record
    was not: the call that finished it was lost with the cache, so this caller finalizes it.
    """

    restored: bool
    status: JobStatus
    outcome: Outcome | None
    became_terminal: bool


class Backlog(msgspec.Struct, frozen=True):
    """Items not yet terminal: ``models[(model, priority)]`` and ``tenants[tenant]``."""

    models: dict[tuple[str, str], int]
    tenants: dict[str, int]
