"""Error codes shared by the API, the bus and the item results.

Clients branch on ``code`` and ``retryable``; the prose in ``message``/``detail`` is for people.
"""

from __future__ import annotations

import enum

import msgspec


class ErrorCode(enum.StrEnum):
    """Every error code a client can see, in an API error body, a job or an item."""

    # Request level (HTTP)
    INVALID_REQUEST = "invalid_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    JOB_NOT_FOUND = "job_not_found"
    FILE_NOT_FOUND = "file_not_found"
    FILE_IN_USE = "file_in_use"
    JOB_NOT_TERMINAL = "job_not_terminal"
    NOTHING_TO_RETRY = "nothing_to_retry"
    INPUTS_NOT_KEPT = "inputs_not_kept"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    MODEL_NOT_FOUND = "model_not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    NOT_FOUND = "not_found"
    INTERNAL_ERROR = "internal_error"
    # Item level
    EMPTY_TEXT = "empty_text"
    INVALID_TEXT = "invalid_text"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    MODEL_UNAVAILABLE = "model_unavailable"
    # Job level: the gateway stopped mid-submission and no retry completed it in time.
    SUBMISSION_INTERRUPTED = "submission_interrupted"


# Item error codes and whether retrying the same input could succeed.
ITEM_RETRYABLE = {
    ErrorCode.EMPTY_TEXT: False,
    ErrorCode.INVALID_TEXT: False,
    ErrorCode.CANCELLED: False,
    ErrorCode.DEADLINE_EXCEEDED: True,
    ErrorCode.MODEL_UNAVAILABLE: True,
    ErrorCode.INTERNAL_ERROR: True,
    ErrorCode.SUBMISSION_INTERRUPTED: True,
}


class ItemError(msgspec.Struct, frozen=True):
    """Why one item failed: the same ``{code, message, retryable}`` shape as the API envelope."""

    code: str
    message: str
    retryable: bool = False

    @classmethod
    def of(cls, code: ErrorCode, message: str) -> ItemError:
        """An item error whose ``retryable`` comes from ``ITEM_RETRYABLE``, not the caller."""
        return cls(code=code.value, message=message, retryable=ITEM_RETRYABLE.get(code, False))


class JobError(msgspec.Struct, frozen=True):
    """A job-level failure (cancelled, deadline exceeded, model unavailable, submission
    interrupted)."""

    code: str
    message: str
