"""The job state cache: one Redis hash per job, the exactly-once counting core.

``inferq:job:{job_id}`` holds the job's fields, its counters and one marker per item that has
started (``i:<index>`` = ``r`` running, ``s`` succeeded, ``f`` failed), so all of it lives and
dies together under one PEXPIREAT (the job's ``expires_at``). Every change is one Lua script:
an item is counted only the first time a terminal marker is set, so redelivered batches
replay harmlessly, and a terminal job never changes again.

Redis is a cache: a script that finds no hash raises ``CacheMiss``; the caller rebuilds the hash
from the result store with ``restore`` and retries. Status reads are one HMGET of the
non-marker fields, O(1) however many items the job has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from schemas.api import Counts, JobStatusDoc
from schemas.errors import JobError
from schemas.states import TERMINAL_JOB, ItemStatus, JobStatus, Outcome, Priority, derive_job_state
from store.redis_errors import CacheMiss, redis_errors

__all__ = [
    "Backlog", "FailOutcome", "JobFields", "JobStateCache", "JobStatusSnapshot", "RecordOutcome",
    "RestoreOutcome", "TerminalRecord", "etag_for",
]

_SCRIPTS = ("create_job", "mark_running", "record_results", "fail_remaining",
            "reconcile_backlog")
# Path(__file__), not importlib.resources: a tests/store/ folder without __init__.py can make
# "store" a namespace package there under an editable install, and resources would look in it.
_LUA = {name: (Path(__file__).with_name("lua") / f"{name}.lua").read_text() for name in _SCRIPTS}

# Item result -> marker. Accepts the markers themselves and ItemStatus (a StrEnum).
_MARKS = {"s": "s", "f": "f", ItemStatus.SUCCEEDED: "s", ItemStatus.FAILED: "f"}

# Everything but the markers: what one status read fetches, in this order.
_FIELDS = ("tenant", "model", "version", "priority", "total", "created_at", "expires_at",
           "deadline", "status", "outcome", "started_at", "finished_at", "error_code",
           "error_message", "succeeded", "failed", "running", "rev")


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
        return self.total - self.running - self.succeeded - self.failed

    @property
    def etag(self) -> str:
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


class JobStateCache:
    """Job counters, state and item markers in Redis; every update is one atomic script.

    Missing hashes raise ``CacheMiss`` from the writers (restore, then retry) and give ``None``
    from ``get_status``. Redis failures raise ``CacheUnavailable`` (retryable).
    """

    def __init__(self, redis: Redis, *, key_prefix: str = "inferq:job:",
                 backlog_key: str = "inferq:backlog", live_key: str = "inferq:live") -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._backlog_key = backlog_key
        self._live_key = live_key
        self._scripts = {name: redis.register_script(text) for name, text in _LUA.items()}

    def key(self, job_id: str) -> str:
        return self._prefix + job_id

    async def init_job(self, job_id: str, fields: JobFields) -> bool:
        """Create a queued job's hash; False (and no change) when it already exists or has
        already expired."""
        created = await self._run(
            "create_job", job_id, _create_args(fields, fields.total, _hash_fields(fields)))
        return bool(created)

    async def mark_running(self, job_id: str, indexes: Iterable[int], now: float) -> JobStatus:
        """Mark items running (once each); the first moves a queued job to running."""
        reply = await self._run("mark_running", job_id, [_ts(now), *map(_index, indexes)])
        if reply is None:
            raise CacheMiss(job_id)
        return JobStatus(_text(reply))

    async def record_results(
        self, job_id: str, results: Iterable[tuple[int, str]], now: float
    ) -> RecordOutcome:
        """Count each item's result once; ``results`` pairs an index with ``"s"`` or ``"f"``."""
        args = [_ts(now)]
        for index, mark in results:
            args += (_index(index), _mark(mark))
        reply = await self._run("record_results", job_id, args)
        if reply is None:
            raise CacheMiss(job_id)
        status, outcome, counted, became = reply
        return RecordOutcome(JobStatus(_text(status)), _outcome(outcome), int(counted),
                             bool(became))

    async def fail_remaining(self, job_id: str, code: str, message: str, now: float) -> FailOutcome:
        """Job-level failure: every item not yet done fails; the job ends ``failed`` with
        ``error {code, message}`` (outcome ``partial`` if any item had succeeded)."""
        reply = await self._run("fail_remaining", job_id, [_ts(now), code, message])
        if reply is None:
            raise CacheMiss(job_id)
        status, outcome, newly, became = reply
        return FailOutcome(JobStatus(_text(status)), _outcome(outcome), [int(i) for i in newly],
                           bool(became))

    async def restore(
        self,
        job_id: str,
        fields: JobFields,
        done: Iterable[tuple[int, str]],
        now: float,
        *,
        started_at: float | None = None,
        terminal: TerminalRecord | None = None,
    ) -> RestoreOutcome:
        """Rebuild a lost hash from the result store: ``done`` pairs each item with a result
        with ``"s"``/``"f"``; ``terminal`` is the durable record's terminal state, if any.

        Writes only if the key is still missing, atomically; a job past ``expires_at`` is not
        restored either (``restored`` is False and the key stays missing).
        """
        if terminal is not None and terminal.status not in TERMINAL_JOB:
            raise ValueError(f"job {job_id}: TerminalRecord with status {terminal.status}")
        marks: dict[int, str] = {}
        for index, mark in done:
            index, mark = int(index), _mark(mark)
            if not 0 <= index < fields.total or marks.setdefault(index, mark) != mark:
                raise ValueError(f"job {job_id}: bad or conflicting result for item {index}")
        started = started_at if started_at is not None else (now if marks else None)
        if terminal is not None and terminal.status == JobStatus.FAILED:
            # As fail_remaining left it: items whose rows were not written yet count failed.
            for index in range(fields.total):
                marks.setdefault(index, "f")
        succeeded = sum(1 for m in marks.values() if m == "s")
        failed = len(marks) - succeeded
        status, outcome = derive_job_state(fields.total, len(marks), succeeded, failed)
        finished_at = now if status in TERMINAL_JOB else None
        if terminal is not None:
            if terminal.status == JobStatus.FAILED:
                status = JobStatus.FAILED
                outcome = Outcome.PARTIAL if succeeded else Outcome.ALL_FAILED
            elif status != terminal.status:
                raise ValueError(f"job {job_id}: store says {terminal.status} but results "
                                 f"give {status} ({succeeded} succeeded, {failed} failed)")
            finished_at = terminal.finished_at
        # rev restarts from the clock (microseconds): far above any rev the lost hash reached,
        # so an ETag issued before the loss never matches a document after it.
        hash_fields = _hash_fields(
            fields, status=status, outcome=outcome, started_at=started, finished_at=finished_at,
            error=terminal.error if terminal else None, succeeded=succeeded, failed=failed,
            rev=int(now * 1_000_000),
        )
        for index, mark in sorted(marks.items()):
            hash_fields += (f"i:{index}", mark)
        pending = 0 if status in TERMINAL_JOB else fields.total - len(marks)
        created = bool(await self._run(
            "create_job", job_id, _create_args(fields, pending, hash_fields)))
        became = created and terminal is None and status in TERMINAL_JOB
        return RestoreOutcome(created, status, outcome, became)

    async def get_status(self, job_id: str) -> JobStatusSnapshot | None:
        """The job's snapshot from one HMGET of its non-marker fields; None if not cached."""
        with redis_errors("get_status"):
            values = await self._redis.hmget(self.key(job_id), _FIELDS)
        v = dict(zip(_FIELDS, map(_text_or_none, values), strict=True))
        if v["status"] is None:
            return None
        error = JobError(code=v["error_code"], message=v["error_message"] or "") \
            if v["error_code"] else None
        return JobStatusSnapshot(
            job_id=job_id, tenant=v["tenant"], model=v["model"], version=int(v["version"]),
            priority=Priority(v["priority"]), total=int(v["total"]),
            created_at=float(v["created_at"]), expires_at=float(v["expires_at"]),
            deadline=_float_or_none(v["deadline"]), status=JobStatus(v["status"]),
            outcome=_outcome(v["outcome"]), started_at=_float_or_none(v["started_at"]),
            finished_at=_float_or_none(v["finished_at"]), error=error,
            succeeded=int(v["succeeded"]), failed=int(v["failed"]), running=int(v["running"]),
            rev=int(v["rev"]),
        )

    async def backlog(self) -> Backlog:
        """Items accepted but not yet terminal, per (model, priority) and per tenant.

        Kept by the same scripts that count items, so it is exact while Redis keeps its
        data: ``init_job`` adds a job's total, each counted result and each item failed by
        ``fail_remaining`` takes one away, and ``restore`` adds back what was not yet done.
        What they cannot see (a job that expires unfinished, a job hash restored while the
        counters survived) ``reconcile_backlog`` heals from the live jobs, periodically.
        One HGETALL of a small hash.
        """
        with redis_errors("backlog"):
            raw = await self._redis.hgetall(self._backlog_key)
        models: dict[tuple[str, str], int] = {}
        tenants: dict[str, int] = {}
        for k, v in raw.items():
            name, n = _text(k), max(0, int(v))
            if name.startswith("m:"):
                model, _, priority = name[2:].rpartition(":")
                models[(model, priority)] = n
            elif name.startswith("t:"):
                tenants[name[2:]] = n
        return Backlog(models, tenants)

    async def tenant_backlog(self, tenant: str) -> int:
        """Items of this tenant accepted but not yet terminal (for its backlog quota)."""
        with redis_errors("tenant_backlog"):
            v = await self._redis.hget(self._backlog_key, f"t:{tenant}")
        return max(0, int(v)) if v is not None else 0

    async def reconcile_backlog(self, now: float, *, every_s: float = 0.0
                                ) -> tuple[int, dict[str, tuple[int, int]]]:
        """Recompute the backlog counters from the live jobs themselves (one atomic script,
        O(live jobs)): the periodic self-healing of ``backlog``. Returns the number of live
        jobs and every counter that had drifted, as ``field -> (was, now)``. With
        ``every_s``, a run within that long of another (any process's) is skipped: (-1, {})."""
        with redis_errors("reconcile_backlog"):
            reply = await self._scripts["reconcile_backlog"](
                keys=[self._live_key, self._backlog_key, self._live_key + ":reconciled"],
                args=[_ts(now), str(int(every_s * 1000))])
        drift = {_text(reply[i]): (int(reply[i + 1]), int(reply[i + 2]))
                 for i in range(1, len(reply), 3)}
        return int(reply[0]), drift

    async def markers(self, job_id: str) -> dict[int, str] | None:
        """Every item marker of the job (index -> ``r``/``s``/``f``); None if not cached.

        O(items): for repairs after a job-level failure, never for status reads.
        """
        with redis_errors("markers"):
            raw = await self._redis.hgetall(self.key(job_id))
        if not raw:
            return None
        out: dict[int, str] = {}
        for k, v in raw.items():
            name = _text(k)
            if name.startswith("i:"):
                out[int(name[2:])] = _text(v)
        return out

    async def delete(self, job_id: str) -> bool:
        """Drop the job's hash (tests use it to simulate a cache loss)."""
        with redis_errors("delete"):
            return bool(await self._redis.delete(self.key(job_id)))

    async def ping(self) -> None:
        """Round trip to Redis (readiness); raises ``CacheUnavailable`` when it is down."""
        with redis_errors("ping"):
            await self._redis.ping()

    async def _run(self, script: str, job_id: str, args: list[str]) -> Any:
        with redis_errors(script):
            return await self._scripts[script](
                keys=[self.key(job_id), self._backlog_key, self._live_key], args=args)


def _hash_fields(
    fields: JobFields, *, status: JobStatus = JobStatus.QUEUED, outcome: Outcome | None = None,
    started_at: float | None = None, finished_at: float | None = None,
    error: JobError | None = None, succeeded: int = 0, failed: int = 0, rev: int = 1,
) -> list[str]:
    """The flat field/value list of a job hash without markers (running is always 0 here)."""
    pairs = {
        "tenant": fields.tenant, "model": fields.model, "version": str(fields.version),
        "priority": fields.priority.value, "total": str(fields.total),
        "created_at": _ts(fields.created_at), "expires_at": _ts(fields.expires_at),
        "deadline": _ts_or_empty(fields.deadline), "status": status.value,
        "outcome": outcome.value if outcome else "", "started_at": _ts_or_empty(started_at),
        "finished_at": _ts_or_empty(finished_at), "error_code": error.code if error else "",
        "error_message": error.message if error else "", "succeeded": str(succeeded),
        "failed": str(failed), "running": "0", "rev": str(rev),
    }
    return [x for pair in pairs.items() for x in pair]


def _create_args(fields: JobFields, backlog: int, hash_fields: list[str]) -> list[str]:
    return [str(int(fields.expires_at * 1000)), str(backlog), *hash_fields]


def _index(index: int) -> str:
    if isinstance(index, bool) or int(index) != index:
        raise TypeError(f"item index must be an int, got {index!r}")
    return str(int(index))


def _mark(mark: str) -> str:
    try:
        return _MARKS[mark]
    except KeyError:
        raise ValueError(f"item result must be 's' or 'f', got {mark!r}") from None


def _ts(t: float) -> str:
    return repr(float(t))


def _ts_or_empty(t: float | None) -> str:
    return "" if t is None else _ts(t)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else _text(value)


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value else None


def _outcome(value: bytes | str | None) -> Outcome | None:
    text = _text_or_none(value)
    return Outcome(text) if text else None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _iso_or_none(t: float | None) -> str | None:
    return None if t is None else _iso(t)
