"""The result store interface: durable job records, item results and idempotency keys.

One abstract class, three record Structs and one error family shared by every backend
(SQLite for the embedded default, Cassandra in production). Redis is only a cache in
front of this store: everything needed to rebuild a job's status lives here.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any, ClassVar, overload

import msgspec

from schemas.errors import ErrorCode
from schemas.states import TERMINAL_ITEM, TERMINAL_JOB, ItemStatus, JobStatus, Outcome


class JobRecord(msgspec.Struct, frozen=True):
    """The durable record of one job.

    The store keeps only the coarse lifecycle (queued -> running on the first
    ``mark_started``, terminal on ``finish_job``); live counts are kept in Redis. Stores
    return ``status`` and ``outcome`` as enum members (equal to their string values).
    """

    job_id: str
    tenant: str
    model: str
    model_version: int
    priority: str
    total: int
    chunks: int
    created_at: float
    expires_at: float
    deadline: float | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    published: bool = False
    status: JobStatus = JobStatus.QUEUED
    outcome: Outcome | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    parent_job_id: str | None = None
    """A retry (``POST /v1/jobs/{id}/retry``): the job whose failed items this one re-runs."""


class ItemRecord(msgspec.Struct, frozen=True):
    """The terminal result of one item; ``output`` is opaque bytes encoded by the caller."""

    job_id: str
    index: int
    status: ItemStatus
    model_version: int
    client_id: str | None = None
    output: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool = False
    finished_at: float = 0.0


class IdempotencyRecord(msgspec.Struct, frozen=True):
    """(tenant, Idempotency-Key) -> the job it created and the hash of the request."""

    tenant: str
    key: str
    request_hash: str
    job_id: str
    created_at: float
    expires_at: float


class StoreError(Exception):
    """Root of result store failures; ``retryable`` says whether trying again may help."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class StoreUnavailable(StoreError):
    """The store is reachable in principle but not now (locked, refused, timed out)."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE
    retryable: bool = True


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not produce (a client error, not ours)."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_REQUEST
    retryable: bool = False


# Cursors: the one place they are made, read and checked. A cursor is the position of the
# last row of a page, as JSON, in URL-safe base64; what it holds is the format's business.


def encode_cursor(parts: list[Any]) -> str:
    """An opaque, URL-safe cursor from the position of the last row of a page."""
    return base64.urlsafe_b64encode(msgspec.json.encode(parts)).decode().rstrip("=")


@overload
def decode_cursor(cursor: str, types: tuple[type, ...]) -> list[Any]: ...
@overload
def decode_cursor(cursor: None, types: tuple[type, ...]) -> None: ...


def decode_cursor(cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
    """The parts of a cursor made by :func:`encode_cursor`, checked against ``types``; None
    for no cursor (the first page). Anything else raises :class:`InvalidCursor`."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = msgspec.json.decode(raw, type=list)
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidCursor(f"invalid cursor {cursor!r}") from exc
    if len(parts) != len(types) or not all(
        isinstance(p, t) and not isinstance(p, bool) for p, t in zip(parts, types, strict=True)
    ):
        raise InvalidCursor(f"invalid cursor {cursor!r}")
    return parts


def encode_index_cursor(index: int) -> str:
    """The cursor of a page of item results that ended at item ``index``."""
    return encode_cursor([index])


def decode_index_cursor(cursor: str | None) -> int:
    """The item index a results cursor points after: -1 (before the first item) for none."""
    parts = decode_cursor(cursor, (int,))
    return -1 if parts is None else parts[0]


def check_limit(limit: int) -> None:
    """A page holds at least one row; a zero or negative limit is a caller's bug."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")


def check_terminal_job(status: JobStatus) -> None:
    """``finish_job`` only ever moves a job to a terminal status; anything else is a bug."""
    if status not in TERMINAL_JOB:
        raise ValueError(f"finish_job needs a terminal status, got {status!r}")


def check_items(items: list[ItemRecord]) -> None:
    """Item results are written once they are terminal; anything else is a bug."""
    for item in items:
        if item.status not in TERMINAL_ITEM or item.index < 0:
            raise ValueError(f"not a terminal item: {item.job_id}[{item.index}] {item.status}")


class ResultStore(abc.ABC):
    """Durable job records, item results and idempotency keys.

    Every method is safe to retry: writes are idempotent (first writer wins) so a
    redelivered batch or a retried request converges to the same rows. Failures are
    :class:`StoreError`; transient ones are :class:`StoreUnavailable`.
    """

    #: True where rows expire by themselves (Cassandra TTL) and ``purge_expired`` is a no-op.
    expires_by_ttl: ClassVar[bool] = False

    @abc.abstractmethod
    async def migrate(self) -> None:
        """Create the schema (tables, indexes) if missing; safe to run again."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return if the store answers a trivial query; else raise :class:`StoreUnavailable`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; idempotent. The store is unusable afterwards."""

    # Jobs

    @abc.abstractmethod
    async def create_job(self, job: JobRecord) -> None:
        """Insert a job; a second create of the same job_id is a no-op."""

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job, or None if unknown (or already expired and purged)."""

    @abc.abstractmethod
    async def list_jobs(
        self, tenant: str, *, cursor: str | None, limit: int
    ) -> tuple[list[JobRecord], str | None]:
        """A page of the tenant's jobs, newest first, and the cursor of the next page.

        Only a None cursor means the end: a page may be shorter than ``limit``.
        """

    @abc.abstractmethod
    async def mark_published(self, job_id: str) -> None:
        """Record that every chunk of the job is durable in JetStream."""

    @abc.abstractmethod
    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
        """Non-terminal jobs created before ``older_than`` and never marked published.

        A gateway that crashed mid-publish leaves these behind; a sweeper republishes
        them (JetStream's ``Nats-Msg-Id`` de-duplicates chunks that did get through).
        """

    @abc.abstractmethod
    async def mark_started(self, job_id: str, started_at: float) -> None:
        """Set started_at (and queued -> running) unless already started or terminal."""

    @abc.abstractmethod
    async def finish_job(
        self,
        job_id: str,
        *,
        status: JobStatus,
        outcome: Outcome | None,
        finished_at: float,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Move a non-terminal job to a terminal status; True if this call changed it.

        A terminal job never changes again, so of two racing finishers exactly one wins.
        """

    @abc.abstractmethod
    async def correct_job_end(
        self,
        job_id: str,
        *,
        expected_error_code: str,
        status: JobStatus,
        outcome: Outcome | None,
        finished_at: float,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Rewrite the terminal state of a job that ended with ``expected_error_code``.

        The one exception to "a terminal job never changes", for one race only: a job-level
        end (cancel, deadline) writes the store first, then learns from Redis that the job
        had already finished by itself; the record is then made to agree with Redis, which
        clients have already seen. True if the record matched and was rewritten.
        """

    # Items

    @abc.abstractmethod
    async def upsert_items(self, items: list[ItemRecord]) -> None:
        """Record terminal item results keyed by (job_id, index); first writer wins."""

    @abc.abstractmethod
    async def replace_items(self, items: list[ItemRecord]) -> None:
        """Write terminal item results, replacing any row already at (job_id, index).

        Only for a job-level failure (cancel, deadline): the items it failed in Redis must
        read failed here too, even where a racing batch wrote a row first. Everything else
        uses :meth:`upsert_items` (first writer wins).
        """

    @abc.abstractmethod
    async def item_counts(self, job_id: str) -> tuple[int, int]:
        """(succeeded, failed) among the recorded items: rebuilds the Redis counters."""

    @abc.abstractmethod
    async def done_indexes(self, job_id: str) -> list[tuple[int, ItemStatus]]:
        """(index, status) of every recorded item in index order: rebuilds item markers."""

    @abc.abstractmethod
    async def get_items(
        self, job_id: str, *, status: ItemStatus | None, after_index: int, limit: int
    ) -> list[ItemRecord]:
        """Up to ``limit`` items with index > ``after_index`` in index order.

        ``status`` (succeeded | failed) filters; None means every recorded item.
        """

    async def iter_items(self, job_id: str, *, page_size: int = 500) -> AsyncIterator[ItemRecord]:
        """Every recorded item in index order, fetched ``page_size`` at a time.

        Keyset pagination over :meth:`get_items`: never holds the whole job in memory,
        and a page costs the same wherever it starts.
        """
        check_limit(page_size)
        after = -1
        while True:
            page = await self.get_items(job_id, status=None, after_index=after, limit=page_size)
            for item in page:
                yield item
            if len(page) < page_size:
                return
            after = page[-1].index

    # Idempotency

    @abc.abstractmethod
    async def claim_idempotency(
        self, rec: IdempotencyRecord, now: float
    ) -> tuple[IdempotencyRecord, bool]:
        """Store ``rec`` unless a live record holds its (tenant, key); atomic.

        Returns (the stored record, whether this call created it). A record whose
        expires_at <= now counts as absent and is replaced.
        """

    @abc.abstractmethod
    async def get_idempotency(self, tenant: str, key: str, now: float) -> IdempotencyRecord | None:
        """The live record for (tenant, key), or None if absent or expired."""

    # Retention

    @abc.abstractmethod
    async def purge_expired(self, now: float) -> int:
        """Delete jobs (with their items) and idempotency records past expires_at.

        Works in bounded chunks so other writers are never blocked for long; returns
        the number of rows deleted.
        """

    async def __aenter__(self) -> ResultStore:
        """``async with`` a store closes it on the way out."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
