"""Webhooks on the wire: what a submit asks for, and what ``GET
/v1/jobs/{job_id}/webhook-deliveries`` answers.

A job's end is delivered once per job (at least once on the wire), as a Standard Webhooks
request whose body is the job's status document.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec


class WebhookEvent(enum.StrEnum):
    """The job ends a webhook can be told about."""

    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"


ALL_EVENTS = (WebhookEvent.JOB_SUCCEEDED, WebhookEvent.JOB_FAILED)


class DeliveryState(enum.StrEnum):
    """Where a job's webhook stands: ``pending`` until its job ends and a receiver said 2xx
    (``delivered``), the retry window ran out or the target was refused (``failed``), or the
    job ended in an event the webhook did not ask for (``skipped``); ``none``: no webhook."""

    NONE = "none"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"


class WebhookRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """``webhook`` of ``POST /v1/jobs``: where to send the job's end, and which ends."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=2)] | None = None


class WebhookAttempt(msgspec.Struct, frozen=True, omit_defaults=True):
    """One delivery attempt, as recorded when it finished. An attempt cut short by a crash of
    the process making it is not recorded (its number is skipped) and is made again."""

    attempt: int
    at: str
    """When the attempt started (RFC 3339)."""
    duration_ms: float
    succeeded: bool
    status_code: int | None = None
    """The receiver's HTTP status; absent when no response came."""
    error: str | None = None
    """Why the attempt failed: a non-2xx answer, a timeout, a refused target..."""


class WebhookDeliveries(msgspec.Struct, frozen=True):
    """``GET /v1/jobs/{job_id}/webhook-deliveries``."""

    job_id: str
    state: DeliveryState
    url: str | None = None
    events: list[WebhookEvent] = []
    webhook_id: str | None = None
    """The ``webhook-id`` header of every attempt: the same on retries, so a receiver can
    drop duplicates."""
    next_attempt_at: str | None = None
    attempts: list[WebhookAttempt] = []
