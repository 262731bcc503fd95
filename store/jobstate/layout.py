"""The job hash ``inferq:job:{job_id}``, field by field: how it is written and read back.

One place knows the field names and how each value is spelled in Redis (floats as ``repr``,
absent values as empty strings); the Lua scripts read and write the same fields. Item
markers (``i:<index>``) are :mod:`store.markers`' business, field names included.
"""

from __future__ import annotations

from schemas.errors import JobError
from schemas.states import JobStatus, Outcome, Priority
from store.jobstate.records import JobFields
from store.jobstate.snapshot import JobStatusSnapshot
from store.markers import Marker, marker_field

STATUS_FIELDS = ("tenant", "model", "version", "priority", "total", "created_at", "expires_at",
                 "deadline", "status", "outcome", "started_at", "finished_at", "error_code",
                 "error_message", "succeeded", "failed", "running", "rev", "parent")
"""Everything but the markers: what one status read fetches, in this order. ``parent`` is
written only for a retry (absent reads as no parent)."""


def hash_fields(
    fields: JobFields, *, status: JobStatus = JobStatus.QUEUED, outcome: Outcome | None = None,
    started_at: float | None = None, finished_at: float | None = None,
    error: JobError | None = None, succeeded: int = 0, failed: int = 0, rev: int = 1,
) -> list[str]:
    """The flat field/value list of a job hash without markers (running is always 0 here)."""
    pairs = {
        "tenant": fields.tenant, "model": fields.model, "version": str(fields.version),
        "priority": fields.priority.value, "total": str(fields.total),
        "created_at": ts(fields.created_at), "expires_at": ts(fields.expires_at),
        "deadline": _ts_or_empty(fields.deadline), "status": status.value,
        "outcome": outcome.value if outcome else "", "started_at": _ts_or_empty(started_at),
        "finished_at": _ts_or_empty(finished_at), "error_code": error.code if error else "",
        "error_message": error.message if error else "", "succeeded": str(succeeded),
        "failed": str(failed), "running": "0", "rev": str(rev),
    }
    if fields.parent_job_id:
        pairs["parent"] = fields.parent_job_id
    return [x for pair in pairs.items() for x in pair]


def marker_fields(marks: dict[int, Marker]) -> list[str]:
    """The flat field/value list of item markers, in index order."""
    return [x for index, mark in sorted(marks.items()) for x in (marker_field(index), mark.value)]


def create_args(fields: JobFields, backlog: int, hash_fields: list[str]) -> list[str]:
    """``create_job.lua``'s arguments: expiry (epoch ms), backlog to add, then the fields."""
    return [str(int(fields.expires_at * 1000)), str(backlog), *hash_fields]


def read_snapshot(job_id: str, values: list[bytes | str | None]) -> JobStatusSnapshot | None:
    """The snapshot from an HMGET of ``STATUS_FIELDS``; None if the hash is missing."""
    v = dict(zip(STATUS_FIELDS, map(_text_or_none, values), strict=True))
    if v["status"] is None:
        return None
    error = JobError(code=v["error_code"], message=v["error_message"] or "") \
        if v["error_code"] else None
    return JobStatusSnapshot(
        job_id=job_id, tenant=v["tenant"], model=v["model"], version=int(v["version"]),
        priority=Priority(v["priority"]), total=int(v["total"]),
        created_at=float(v["created_at"]), expires_at=float(v["expires_at"]),
        deadline=_float_or_none(v["deadline"]), status=JobStatus(v["status"]),
        outcome=outcome(v["outcome"]), started_at=_float_or_none(v["started_at"]),
        finished_at=_float_or_none(v["finished_at"]), error=error,
        succeeded=int(v["succeeded"]), failed=int(v["failed"]), running=int(v["running"]),
        rev=int(v["rev"]), parent_job_id=v["parent"] or None,
    )


def index_arg(index: int) -> str:
    """An item index as a script argument; anything but an int is a caller's bug."""
    if isinstance(index, bool) or int(index) != index:
        raise TypeError(f"item index must be an int, got {index!r}")
    return str(int(index))


def ts(t: float) -> str:
    """A time as the hash stores it: the float's repr, exact both ways."""
    return repr(float(t))


def text(value: bytes | str) -> str:
    """A Redis reply as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def outcome(value: bytes | str | None) -> Outcome | None:
    """The outcome field (or script reply); empty means none yet."""
    t = _text_or_none(value)
    return Outcome(t) if t else None


def _ts_or_empty(t: float | None) -> str:
    return "" if t is None else ts(t)


def _text_or_none(value: bytes | str | None) -> str | None:
    return None if value is None else text(value)


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value else None
